"""Customer orders: a header keyed by externalOrderId and its lines, replaced whole on re-import."""

import pandera.polars as pa

from contracts.common import MAX_IDENTIFIER_LENGTH, Contract, WireField, WireType


class OrderSchema(pa.DataFrameModel):
    external_order_id: str = pa.Field(alias="externalOrderId", str_length={"max_value": MAX_IDENTIFIER_LENGTH})

    class Config:
        strict = False


class OrderLineSchema(pa.DataFrameModel):
    sku_id: str = pa.Field(alias="skuId", str_length={"max_value": MAX_IDENTIFIER_LENGTH})
    quantity: float = pa.Field(gt=0)
    location_id: str = pa.Field(alias="locationId", str_length={"max_value": MAX_IDENTIFIER_LENGTH})

    class Config:
        strict = False


CONTRACT = Contract(
    kind="orders",
    array_key="orders",
    fields=(
        WireField(
            "externalOrderId",
            WireType.IDENTIFIER,
            "The customer order's id, its key: a re-import replaces the order and all its lines.",
            "SO-5001",
        ),
    ),
    schema=OrderSchema,
    key=("externalOrderId",),
    line_fields=(
        WireField("skuId", WireType.IDENTIFIER, "The product sold (a product stub is created if new).", "SKU-1"),
        WireField("quantity", WireType.NUMBER, "Units sold, > 0.", 3),
        WireField(
            "locationId",
            WireType.IDENTIFIER,
            "The location it is fulfilled from (a location stub is created if new).",
            "WH1",
        ),
    ),
    line_schema=OrderLineSchema,
)
