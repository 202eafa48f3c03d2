"""contracts/screen.py: a frame is proven good in one query only when pandera's validate would find nothing."""

from __future__ import annotations

import datetime
import math

import pandera.polars as pa
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.common import MAX_IDENTIFIER_LENGTH, ROW
from contracts.purchase_orders import MAX_UNIT_COST, PURCHASE_ORDER_STATUSES
from contracts.screen import passes
from service.kinds import KINDS

MODELS = {
    f"{kind}{' lines' if line else ''}": model
    for kind, entry in KINDS.items()
    for line, model in ((False, entry.contract.schema), (True, entry.contract.line_schema))
    if model is not None
}

# Values at and around every bound the contracts set, so that a check the screen misses is found.
TEXTS = ["", "a", "x" * MAX_IDENTIFIER_LENGTH, "x" * (MAX_IDENTIFIER_LENGTH + 1), *PURCHASE_ORDER_STATUSES, "pending"]
NUMBERS = [-1.0, -0.0, 0.0, 1e-9, 1.0, MAX_UNIT_COST, MAX_UNIT_COST * 10, math.nan, math.inf]
DATES = [datetime.date(2024, 1, 1)]


def _values(dtype: pl.DataType) -> st.SearchStrategy[object]:
    if dtype == pl.String():
        return st.sampled_from([*TEXTS, None])
    if dtype.is_float():
        return st.sampled_from([*NUMBERS, None])
    if dtype == pl.Date():
        return st.sampled_from([*DATES, None])
    raise AssertionError(f"no values for {dtype}")


@st.composite
def _frames(draw: st.DrawFn, model: type[pa.DataFrameModel]) -> pl.DataFrame:
    """A typed frame as cast_fields makes it: the schema's columns, each of its own type, and the row number."""
    columns = {name: column.dtype.type for name, column in model.to_schema().columns.items()}
    height = draw(st.integers(0, 4))
    # Half the values good for every check (but status's), so that frames that pass are common too.
    good: dict[pl.DataType, object] = {pl.String(): "SKU-1", pl.Float64(): 1.0, pl.Date(): DATES[0]}
    data: dict[str, list[object]] = {ROW: list(range(height))}
    for name, dtype in columns.items():
        data[name] = [draw(st.one_of(st.just(good[dtype]), _values(dtype))) for _ in range(height)]
    return pl.DataFrame(data, schema={ROW: pl.Int64(), **columns})


def _pandera_passes(model: type[pa.DataFrameModel], frame: pl.DataFrame) -> bool:
    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors:
        return False
    return True


@pytest.mark.parametrize("name", sorted(MODELS))
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_the_screen_agrees_with_pandera(name: str, data: st.DataObject) -> None:
    model = MODELS[name]
    frame = data.draw(_frames(model))
    assert passes(model, frame) == _pandera_passes(model, frame)


def test_every_contract_is_screened() -> None:
    """The screen is what makes small jobs cheap: a contract it cannot evaluate would quietly lose that."""
    for name, model in MODELS.items():
        frame = pl.DataFrame(
            schema={ROW: pl.Int64(), **{c: s.dtype.type for c, s in model.to_schema().columns.items()}}
        )
        assert passes(model, frame), name


def test_a_wrong_type_or_a_missing_column_is_left_to_pandera() -> None:
    model = KINDS["inventory"].contract.schema
    good = pl.DataFrame({"skuId": ["S"], "locationId": ["L"], "quantityOnHand": [1.0]})
    full = good.with_columns(pl.lit(None, pl.Float64()).alias(c) for c in ["quantityReserved", "reorderPoint"])
    assert passes(model, full)
    assert not passes(model, good)
    assert not passes(model, full.with_columns(pl.col("quantityOnHand").cast(pl.Int64())))


class _Unique(pa.DataFrameModel):
    code: str = pa.Field(unique=True)


class _FrameWide(pa.DataFrameModel):
    low: float
    high: float

    @pa.dataframe_check
    @classmethod
    def ordered(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("low") <= pl.col("high"))


class _OneDtype(pa.DataFrameModel):
    """Config.dtype sets every column's type, whatever the fields say."""

    amount: float

    class Config:
        dtype = pl.Int64


@pytest.mark.parametrize(
    ("model", "frame"),
    [
        (_Unique, pl.DataFrame({"code": ["a", "b"]})),
        (_FrameWide, pl.DataFrame({"low": [1.0], "high": [2.0]})),
        (_OneDtype, pl.DataFrame({"amount": [1]})),
    ],
)
def test_a_schema_it_cannot_evaluate_always_goes_to_pandera(
    model: type[pa.DataFrameModel], frame: pl.DataFrame
) -> None:
    """Uniqueness and frame-wide checks are not screened: even a good frame is not proven good here."""
    assert _pandera_passes(model, frame)
    assert not passes(model, frame)


class _Raising(pa.DataFrameModel):
    code: str

    @pa.check("code")
    @classmethod
    def never_runs(cls, data: pa.PolarsData) -> pl.LazyFrame:
        raise RuntimeError("a check that fails to run")


def test_a_check_that_raises_is_left_to_pandera() -> None:
    frame = pl.DataFrame({"code": ["a"]})
    assert not _pandera_passes(_Raising, frame)
    assert not passes(_Raising, frame)


def test_a_frame_wide_dtype_is_left_to_pandera() -> None:
    """The one disagreement a review found: the fields say float, the schema's dtype says Int64."""
    frame = pl.DataFrame({"amount": [1.5]})
    assert not _pandera_passes(_OneDtype, frame)
    assert not passes(_OneDtype, frame)
