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
        WireField(
            "skuId",
            WireType.IDENTIFIER,
            "The product's SKU (a product stub is created if the catalog lacks it).",
            "SKU-1",
        ),
        WireField(
            "locationId",
            WireType.IDENTIFIER,
            "The warehouse or store holding the stock (a location stub is created if new).",
            "WH1",
        ),
        WireField("quantityOnHand", WireType.NUMBER, "Units physically at the location, >= 0; missing: 0.", 12),
        WireField("quantityReserved", WireType.NUMBER, "Units of it promised to orders, >= 0; missing: 0.", 2),
        WireField(
            "reorderPoint",
            WireType.NUMBER,
            "Reorder when on hand falls to this many units, >= 0; missing: 0 (stored as min_quantity).",
            5,
        ),
    ),
    schema=InventorySchema,
    key=("skuId", "locationId"),
)
