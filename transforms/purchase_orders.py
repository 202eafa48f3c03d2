"""Purchase orders -> purchase_orders + purchase_order_lines (lines numbered 1..n)."""

import polars as pl

from contracts.common import ROW, Validated
from transforms.common import (
    Prepared,
    id_references,
    keep_last,
    keep_lines_of,
    location_references,
    normalize_location,
    require_validated,
)


def prepare_purchase_orders(validated: Validated, organization_id: str) -> Prepared:
    rows, warnings = keep_last(validated.rows, ["externalPoNumber"], ["externalPoNumber"])
    lines = keep_lines_of(require_validated(validated), rows).join(rows.select(ROW, "externalPoNumber"), on=ROW)
    headers = rows.select(
        pl.col("externalPoNumber").alias("external_po_number"),
        pl.col("supplierId").alias("supplier_id"),
        normalize_location(pl.col("destinationLocationId"), organization_id).alias("destination_location_id"),
        pl.col("status").fill_null("PENDING").alias("status"),
    )
    po_lines = lines.select(
        pl.col("externalPoNumber").alias("external_po_number"),
        "line_number",
        pl.col("skuId").alias("sku_id"),
        "quantity",
        pl.col("unitCost").alias("unit_cost"),
    )
    # As if applied in order: a superseded order still named its supplier, location and SKUs.
    all_lines = require_validated(validated)
    references = {
        "suppliers": id_references(validated.rows, "supplierId"),
        "products": id_references(all_lines, "skuId"),
        "locations": location_references(validated.rows, "destinationLocationId", organization_id),
    }
    return Prepared(rows=headers, lines=po_lines, references=references, warnings=warnings)
