"""What every table and column of the warehouse holds, as DuckDB comments: an analyst reads them with
`SELECT table_name, column_name, comment FROM duckdb_columns()` (or `duckdb_tables()`), in the live file
and in the analysts' copy. A column filled from the wire says which field, with that field's own
description (contracts/); import_jobs' columns are described by the job record (service/job.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from contracts import catalog, demand_history, inventory, orders, purchase_orders, suppliers
from contracts.common import Contract
from service.job import FIELD_DOCS, WAREHOUSE_COLUMNS

_CONTRACTS: dict[str, Contract] = {
    c.kind: c for c in (m.CONTRACT for m in (catalog, inventory, suppliers, purchase_orders, orders, demand_history))
}
"""The contracts by kind (service/kinds.py joins them to the tables, which need this module first)."""

LOCATION_KEY = (
    "The location as `{organization_id}-{locationId}` (WH1 of acme is `acme-WH1`): join locations on"
    " (organization_id, location_id) for the code as sent."
)
LINEAGE = {
    "organization_id": "The organization whose key imported the row; every query filters or groups on it.",
    "created_at": "When the row was first written (UTC).",
    "updated_at": "When the row was last written by an import (UTC).",
    "last_job_id": "The import job that last wrote the row (import_jobs.job_id).",
}
AUTO_CREATED = (
    "True for a stub: made because an import referred to it before it was imported itself; an import"
    " of it clears the flag."
)


def wire(kind: str, name: str, note: str = "") -> str:
    """A column filled from a wire field: which one, and what it means."""
    from service.kinds import KINDS  # here: the kinds name the warehouse's tables, which load this module

    contract = KINDS[kind].contract
    field = next(f for f in (*contract.fields, *contract.line_fields) if f.name == name)
    inside = "a line's " if field in contract.line_fields else ""
    return f"From {kind} {inside}`{name}`: {field.description}{' ' + note if note else ''}"


def tables() -> dict[str, tuple[str, dict[str, str]]]:
    """Each table: what it holds, and its columns' comments (the lineage columns' are LINEAGE)."""
    return {
        "products": (
            "The catalog: one row per product (SKU) of an organization, imported or stubbed.",
            {
                "external_id": wire("catalog", "externalId"),
                "name": wire("catalog", "name"),
                "auto_created": AUTO_CREATED,
            },
        ),
        "suppliers": (
            "One row per supplier of an organization, imported or stubbed.",
            {"external_id": wire("suppliers", "externalId"), "auto_created": AUTO_CREATED},
        ),
        "locations": (
            "One row per location (warehouse, store) an import named; made by the imports that refer to them.",
            {
                "location_id": "The location as `{organization_id}-{locationId}` (WH1 of acme is `acme-WH1`): the key"
                " the other tables refer to it by.",
                "code": "The location's id as sent (`WH1`): filter on this.",
                "auto_created": AUTO_CREATED,
            },
        ),
        "inventory_levels": (
            "Stock of each product at each location, as last imported (units).",
            {
                "sku_id": wire("inventory", "skuId"),
                "location_id": LOCATION_KEY,
                "quantity_on_hand": wire("inventory", "quantityOnHand"),
                "quantity_reserved": wire("inventory", "quantityReserved"),
                "min_quantity": wire("inventory", "reorderPoint"),
                "quantity_available": "quantity_on_hand - quantity_reserved (units; negative when more is promised"
                " than is there).",
            },
        ),
        "purchase_orders": (
            "Purchase orders to suppliers, one row per order; a re-import replaces the order and its lines.",
            {
                "external_po_number": wire("purchase-orders", "externalPoNumber"),
                "supplier_id": wire("purchase-orders", "supplierId"),
                "destination_location_id": wire("purchase-orders", "destinationLocationId") + " " + LOCATION_KEY,
                "status": wire("purchase-orders", "status"),
            },
        ),
        "purchase_order_lines": (
            "The lines of purchase_orders, in the order sent.",
            {
                "external_po_number": "The purchase order the line belongs to (purchase_orders.external_po_number).",
                "line_number": "The line's place in its order, from 1.",
                "sku_id": wire("purchase-orders", "skuId"),
                "quantity": wire("purchase-orders", "quantity"),
                "unit_cost": wire("purchase-orders", "unitCost"),
            },
        ),
        "orders": (
            "Customer orders, one row per order; a re-import replaces the order and its lines.",
            {"external_order_id": wire("orders", "externalOrderId")},
        ),
        "order_lines": (
            "The lines of orders, in the order sent.",
            {
                "external_order_id": "The order the line belongs to (orders.external_order_id).",
                "line_number": "The line's place in its order, from 1.",
                "sku_id": wire("orders", "skuId"),
                "quantity": wire("orders", "quantity"),
                "location_id": wire("orders", "locationId") + " " + LOCATION_KEY,
            },
        ),
        "demand_history": (
            "Weekly demand of each product at each location and channel; a record for an existing week replaces it.",
            {
                "sku_id": wire("demand-history", "skuId"),
                "location_id": LOCATION_KEY,
                "week_starting": wire("demand-history", "weekStarting"),
                "channel": wire("demand-history", "channel"),
                "actual_demand": wire("demand-history", "actualDemand"),
                "forecasted_demand": wire("demand-history", "forecastedDemand"),
            },
        ),
        "import_jobs": (
            "One row per finished import job (COMPLETED or FAILED), written with the job's merge.",
            {definition.split()[0]: FIELD_DOCS[name][0] for name, definition in WAREHOUSE_COLUMNS.items()},
        ),
    }


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def comment_statements(held: Mapping[tuple[str, str | None], str | None] | None = None) -> list[str]:
    """COMMENT ON every table and column, run whenever the warehouse is opened (they overwrite); with
    `held`, the comments there already by (table, column or None), only those that differ."""
    statements = []
    for table, (about, columns) in tables().items():
        lineage = {} if table == "import_jobs" else LINEAGE  # a job's own times are its record's
        described: dict[str | None, str] = {None: about}
        described.update(lineage)
        described.update(columns)
        for column, text in described.items():
            if held is not None and held.get((table, column)) == text:
                continue
            target = f"TABLE {table}" if column is None else f"COLUMN {table}.{column}"
            statements.append(f"COMMENT ON {target} IS {_quoted(text)}")
    return statements
