"""Inventory levels: stock of a SKU at a location, keyed by (skuId, locationId)."""

import pandera.polars as pa

from contracts.common import MAX_IDENTIFIER_LENGTH, Contract, WireField, WireType


class InventorySchema(pa.DataFrameModel):
    sku_id: str = pa.Field(alias="skuId", str_length={"max_value": MAX_IDENTIFIER_LENGTH})
    location_id: str = pa.Field(alias="locationId", str_length={"max_value": MAX_IDENTIFIER_LENGTH})
    quantity_on_hand: float = pa.Field(alias="quantityOnHand", nullable=True, ge=0)
    quantity_reserved: float = pa.Field(alias="quantityReserved", nullable=True, ge=0)
    reorder_point: float = pa.Field(alias="reorderPoint", nullable=True, ge=0)

    class Config:
        strict = False


CONTRACT = Contract(
    kind="inventory",
    array_key="levels",
    fields=(
        WireField("skuId", WireType.IDENTIFIER),
        WireField("locationId", WireType.IDENTIFIER),
        WireField("quantityOnHand", WireType.NUMBER),
        WireField("quantityReserved", WireType.NUMBER),
        WireField("reorderPoint", WireType.NUMBER),
    ),
    schema=InventorySchema,
    key=("skuId", "locationId"),
)
