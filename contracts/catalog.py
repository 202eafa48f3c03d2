"""Catalog: products keyed by externalId; name defaults to the externalId."""

import pandera.polars as pa

from contracts.common import MAX_IDENTIFIER_LENGTH, Contract, WireField, WireType


class CatalogSchema(pa.DataFrameModel):
    external_id: str = pa.Field(alias="externalId", str_length={"max_value": MAX_IDENTIFIER_LENGTH})
    name: str = pa.Field(nullable=True)

    class Config:
        strict = False


CONTRACT = Contract(
    kind="catalog",
    array_key="products",
    fields=(
        WireField(
            "externalId",
            WireType.IDENTIFIER,
            "The product's SKU, the key of the catalog (a string, or a number kept as written).",
            "SKU-1",
        ),
        WireField(
            "name", WireType.TEXT, "The product's name, kept as sent; missing: the externalId.", "Blue mug 350 ml"
        ),
    ),
    schema=CatalogSchema,
    key=("externalId",),
)
