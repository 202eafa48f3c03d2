"""Does a typed frame pass every check of its pandera schema? One collect says so.

pandera's polars backend collects once per column per check (33 times for inventory's five fields), a
fixed cost that dominates validating a small job. Most frames pass everything: `passes` evaluates the
same checks, through pandera's own check backend, as one query. Only a frame it does not prove good goes
through `schema.validate`, which finds and describes the failures. A schema using anything `passes` does
not evaluate (frame-wide or element-wise checks, uniqueness, coercion, regex columns) is never proven
good here: it always goes through pandera.
"""

from __future__ import annotations

import functools

import pandera.backends.polars.builtin_checks  # noqa: F401  (registers the built-in checks for polars)
import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.backends.polars.checks import PolarsCheckBackend
from pandera.constants import CHECK_OUTPUT_KEY


def passes(model: type[pa.DataFrameModel], frame: pl.DataFrame) -> bool:
    """True only if `model.validate(frame, lazy=True)` would raise nothing; False when some row fails, or
    when the schema holds what this does not evaluate."""
    schema = _schema(model)
    if schema is None:
        return False
    try:
        return _passes(schema, frame)
    except Exception:  # a check that raises is pandera's to catch and report
        return False


def _passes(schema: pa.DataFrameSchema, frame: pl.DataFrame) -> bool:
    lazy = frame.lazy()
    verdicts: list[pl.LazyFrame] = []
    for name, column in schema.columns.items():
        if name not in frame.columns:  # pandera's to report, or to allow
            return False
        dtype = frame.schema[name]
        if column.dtype is not None and not column.dtype.check(dtype, PolarsData(lazy.select(name), name)):
            return False
        if not column.nullable:
            present = pl.col(name).is_not_null()
            if dtype.is_float():  # pandera counts NaN as null
                present = present & pl.col(name).is_not_nan()
            verdicts.append(lazy.select(present.all()))
        for check in column.checks:
            output = PolarsCheckBackend(check).apply(PolarsData(lazy, name))
            if isinstance(output, bool):
                if not output:
                    return False
                continue
            result = pl.col(CHECK_OUTPUT_KEY)
            passed = (result | result.is_null()) if check.ignore_na else result.fill_null(False)
            verdicts.append(output.select(passed.all(ignore_nulls=False)))
    if not verdicts:
        return True
    return all(verdict.item() is True for verdict in pl.collect_all(verdicts))


@functools.cache
def _schema(model: type[pa.DataFrameModel]) -> pa.DataFrameSchema | None:
    """The model's schema when `passes` can evaluate all of it, else None."""
    schema = model.to_schema()
    if schema.checks or schema.unique or schema.coerce or schema.strict or schema.ordered or schema.parsers:
        return None
    if schema.dtype is not None or schema.drop_invalid_rows or schema.add_missing_columns:  # dtype: every column's
        return None
    for column in schema.columns.values():
        if column.unique or column.coerce or column.regex or column.parsers or column.default is not None:
            return None
        if column.drop_invalid_rows:
            return None
        if any(check.element_wise or check.groupby is not None for check in column.checks):
            return None
    return schema
