"""Customer orders -> orders + order_lines (lines numbered 1..n, locations normalized)."""

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


def prepare_orders(validated: Validated, organization: Organization) -> Prepared:
    rows, warnings = keep_last(validated.rows, ["externalOrderId"], ["externalOrderId"])
    lines = keep_lines_of(require_validated(validated), rows, "externalOrderId")
    headers = rows.select(pl.col("externalOrderId").alias("external_order_id"), *carried(rows))
    order_lines = lines.select(
        pl.col("externalOrderId").alias("external_order_id"),
        "line_number",
        pl.col("skuId").alias("sku_id"),
        "quantity",
        normalize_location(pl.col("locationId"), organization).alias("location_id"),
        *carried(lines),
    )
    # As if applied in order: a superseded order still named its SKUs and locations.
    all_lines = require_validated(validated)
    references = {
        "products": id_references(all_lines, "skuId"),
        "locations": location_references(all_lines, "locationId", organization),
    }
    return Prepared(rows=headers, lines=order_lines, references=references, warnings=warnings)
