"""Customer orders -> orders + order_lines (lines numbered 1..n, locations normalized)."""

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


def prepare_orders(validated: Validated, organization_id: str) -> Prepared:
    rows, warnings = keep_last(validated.rows, ["externalOrderId"], ["externalOrderId"])
    lines = keep_lines_of(require_validated(validated), rows).join(rows.select(ROW, "externalOrderId"), on=ROW)
    headers = rows.select(pl.col("externalOrderId").alias("external_order_id"))
    order_lines = lines.select(
        pl.col("externalOrderId").alias("external_order_id"),
        "line_number",
        pl.col("skuId").alias("sku_id"),
        "quantity",
        normalize_location(pl.col("locationId"), organization_id).alias("location_id"),
    )
    # As if applied in order: a superseded order still named its SKUs and locations.
    all_lines = require_validated(validated)
    references = {
        "products": id_references(all_lines, "skuId"),
        "locations": location_references(all_lines, "locationId", organization_id),
    }
    return Prepared(rows=headers, lines=order_lines, references=references, warnings=warnings)
