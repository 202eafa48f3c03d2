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
    fields=(WireField("externalId", WireType.IDENTIFIER),),
    schema=SuppliersSchema,
    key=("externalId",),
)
