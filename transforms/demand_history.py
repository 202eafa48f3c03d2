"""Demand records -> demand_history, bucketed to the Monday of their ISO week."""

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
    week_start,
)

DEFAULT_CHANNEL = "ALL"


def prepare_demand_history(validated: Validated, organization: Organization) -> Prepared:
    # Defaults and bucketing come first: two records of the same week are the same key.
    actual = pl.col("actualDemand").fill_null(0.0)
    bucketed = validated.rows.with_columns(
        week_start(pl.col("weekStarting")).alias("weekStarting"),
        pl.col("channel").fill_null(DEFAULT_CHANNEL),
        actual.alias("actualDemand"),
        pl.col("forecastedDemand").fill_null(actual),
    )
    key = ["skuId", "locationId", "weekStarting", "channel"]
    rows, warnings = keep_last(bucketed, key, key)
    demand = rows.select(
        pl.col("skuId").alias("sku_id"),
        normalize_location(pl.col("locationId"), organization).alias("location_id"),
        pl.col("weekStarting").alias("week_starting"),
        "channel",
        pl.col("actualDemand").alias("actual_demand"),
        pl.col("forecastedDemand").alias("forecasted_demand"),
        *carried(rows),
    )
    references = {
        "products": id_references(rows, "skuId"),
        "locations": location_references(rows, "locationId", organization),
    }
    return Prepared(rows=demand, references=references, warnings=warnings)
