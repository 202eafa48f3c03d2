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
        WireField(
            "externalPoNumber",
            WireType.IDENTIFIER,
            "The purchase order's number, its key: a re-import replaces the order and all its lines.",
            "PO-1001",
        ),
        WireField(
            "supplierId",
            WireType.IDENTIFIER,
            "The supplier it is ordered from (a supplier stub is created if new).",
            "SUP-7",
        ),
        WireField(
            "destinationLocationId",
            WireType.IDENTIFIER,
            "Where the goods are to be delivered (a location stub is created if new).",
            "WH1",
        ),
        WireField(
            "status",
            WireType.LABEL,
            "The order's state, in any case (stored upper-case); missing: PENDING.",
            "SUBMITTED",
        ),
    ),
    schema=PurchaseOrderSchema,
    key=("externalPoNumber",),
    line_fields=(
        WireField("skuId", WireType.IDENTIFIER, "The product ordered (a product stub is created if new).", "SKU-1"),
        WireField("quantity", WireType.NUMBER, "Units ordered, > 0.", 40),
        WireField(
            "unitCost",
            WireType.NUMBER,
            "The price of one unit, >= 0, in the organization's currency (stored to 4 decimals).",
            2.35,
        ),
    ),
    line_schema=PurchaseOrderLineSchema,
)
