"""Purchase orders: a header keyed by externalPoNumber and its lines, replaced whole on re-import."""

import pandera.polars as pa

from contracts.common import MAX_IDENTIFIER_LENGTH, Contract, WireField, WireType

PURCHASE_ORDER_STATUSES = (
    "PENDING",
    "SUBMITTED",
    "CONFIRMED",
    "PARTIALLY_RECEIVED",
    "RECEIVED",
    "CANCELLED",
    "CLOSED",
)
# unit_cost is stored as DECIMAL(18, 4): anything larger cannot be stored exactly.
MAX_UNIT_COST = 99_999_999_999_999.0


class PurchaseOrderSchema(pa.DataFrameModel):
    external_po_number: str = pa.Field(alias="externalPoNumber", str_length={"max_value": MAX_IDENTIFIER_LENGTH})
    supplier_id: str = pa.Field(alias="supplierId", str_length={"max_value": MAX_IDENTIFIER_LENGTH})
    destination_location_id: str = pa.Field(
        alias="destinationLocationId", str_length={"max_value": MAX_IDENTIFIER_LENGTH}
    )
    status: str = pa.Field(nullable=True, isin=list(PURCHASE_ORDER_STATUSES))

    class Config:
        strict = False


class PurchaseOrderLineSchema(pa.DataFrameModel):
    sku_id: str = pa.Field(alias="skuId", str_length={"max_value": MAX_IDENTIFIER_LENGTH})
    quantity: float = pa.Field(gt=0)
    unit_cost: float = pa.Field(alias="unitCost", ge=0, le=MAX_UNIT_COST)

    class Config:
        strict = False


CONTRACT = Contract(
    kind="purchase-orders",
    array_key="purchaseOrders",
    fields=(
        WireField("externalPoNumber", WireType.IDENTIFIER),
        WireField("supplierId", WireType.IDENTIFIER),
        WireField("destinationLocationId", WireType.IDENTIFIER),
        WireField("status", WireType.LABEL),
    ),
    schema=PurchaseOrderSchema,
    key=("externalPoNumber",),
    line_fields=(
        WireField("skuId", WireType.IDENTIFIER),
        WireField("quantity", WireType.NUMBER),
        WireField("unitCost", WireType.NUMBER),
    ),
    line_schema=PurchaseOrderLineSchema,
)
