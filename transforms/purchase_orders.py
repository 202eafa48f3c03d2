"""Purchase orders -> purchase_orders + purchase_order_lines (lines numbered 1..n)."""

import polars as pl

from contracts.common import Validated
from transforms.common import (
    Organization,
    Prepared,
    carried,
    id_references,
    keep_last,
    keep_lines_of,
    location_references,
    normalize_location,
    require_validated,
)


def prepare_purchase_orders(validated: Validated, organization: Organization) -> Prepared:
    rows, warnings = keep_last(validated.rows, ["externalPoNumber"], ["externalPoNumber"])
    lines = keep_lines_of(require_validated(validated), rows, "externalPoNumber")
    headers = rows.select(
        pl.col("externalPoNumber").alias("external_po_number"),
        pl.col("supplierId").alias("supplier_id"),
        normalize_location(pl.col("destinationLocationId"), organization).alias("destination_location_id"),
        pl.col("status").fill_null("PENDING").alias("status"),
        *carried(rows),
    )
    po_lines = lines.select(
        pl.col("externalPoNumber").alias("external_po_number"),
        "line_number",
        pl.col("skuId").alias("sku_id"),
        "quantity",
        pl.col("unitCost").alias("unit_cost"),
        *carried(lines),
    )
    # As if applied in order: a superseded order still named its supplier, location and SKUs.
    all_lines = require_validated(validated)
    references = {
        "suppliers": id_references(validated.rows, "supplierId"),
        "products": id_references(all_lines, "skuId"),
        "locations": location_references(validated.rows, "destinationLocationId", organization),
    }
    return Prepared(rows=headers, lines=po_lines, references=references, warnings=warnings)
