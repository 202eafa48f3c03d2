"""Suppliers keyed by externalId."""

import pandera.polars as pa

from contracts.common import MAX_IDENTIFIER_LENGTH, Contract, WireField, WireType


class SuppliersSchema(pa.DataFrameModel):
    external_id: str = pa.Field(alias="externalId", str_length={"max_value": MAX_IDENTIFIER_LENGTH})

    class Config:
        strict = False


CONTRACT = Contract(
    kind="suppliers",
    array_key="suppliers",
    fields=(WireField("externalId", WireType.IDENTIFIER, "The supplier's id, the key of the suppliers.", "SUP-7"),),
    schema=SuppliersSchema,
    key=("externalId",),
)
