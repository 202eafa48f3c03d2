"""Supplier rows -> suppliers."""

import polars as pl

from contracts.common import Validated
from transforms.common import Organization, Prepared, carried, keep_last


def prepare_suppliers(validated: Validated, organization: Organization) -> Prepared:
    rows, warnings = keep_last(validated.rows, ["externalId"], ["externalId"])
    return Prepared(rows=rows.select(pl.col("externalId").alias("external_id"), *carried(rows)), warnings=warnings)
