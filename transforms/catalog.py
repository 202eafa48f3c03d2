"""Catalog rows -> products; name defaults to the externalId."""

import polars as pl

from contracts.common import Validated
from transforms.common import Organization, Prepared, carried, keep_last


def prepare_catalog(validated: Validated, organization: Organization) -> Prepared:
    rows, warnings = keep_last(validated.rows, ["externalId"], ["externalId"])
    products = rows.select(
        pl.col("externalId").alias("external_id"),
        pl.coalesce("name", "externalId").alias("name"),
        *carried(rows),
    )
    return Prepared(rows=products, warnings=warnings)
