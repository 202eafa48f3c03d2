"""Inventory rows -> inventory_levels, with defaults, normalized locations and stub references."""

import polars as pl

from contracts.common import Validated
from transforms.common import (
    Organization,
    Prepared,
    carried,
    id_references,
    keep_last,
    location_references,
    normalize_location,
)


def prepare_inventory(validated: Validated, organization: Organization) -> Prepared:
    rows, warnings = keep_last(validated.rows, ["skuId", "locationId"], ["skuId", "locationId"])
    on_hand = pl.col("quantityOnHand").fill_null(0.0)
    reserved = pl.col("quantityReserved").fill_null(0.0)
    levels = rows.select(
        pl.col("skuId").alias("sku_id"),
        normalize_location(pl.col("locationId"), organization).alias("location_id"),
        on_hand.alias("quantity_on_hand"),
        reserved.alias("quantity_reserved"),
        pl.col("reorderPoint").fill_null(0.0).alias("min_quantity"),
        (on_hand - reserved).alias("quantity_available"),
        *carried(rows),
    )
    references = {
        "products": id_references(rows, "skuId"),
        "locations": location_references(rows, "locationId", organization),
    }
    return Prepared(rows=levels, references=references, warnings=warnings)
