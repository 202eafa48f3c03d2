"""Helpers every transform shares: last-wins de-duplication, locations, ISO weeks, references, lines."""

from __future__ import annotations

import datetime
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from contracts.common import ERROR_SCHEMA, LINE, ROW, Validated
from service.kinds import KINDS
from tests.frames import IMPURE_STANDARD_MODULES, top_level_imports, validate_elements
from transforms.common import (
    JOB,
    Prepared,
    id_references,
    keep_last,
    keep_lines_of,
    location_references,
    normalize_location,
    require_validated,
    week_start,
)

date = datetime.date


def _frame(rows: list[int], **columns: list[Any]) -> pl.DataFrame:
    return pl.DataFrame({ROW: rows, **columns}).with_columns(pl.col(ROW).cast(pl.Int64()))


@pytest.mark.parametrize(
    ("frame", "key", "kept", "warnings"),
    [
        (_frame([0, 1], k=["A", "B"]), ["k"], [0, 1], []),
        (
            _frame([0, 1, 2], k=["A", "B", "A"]),
            ["k"],
            [1, 2],
            [(0, "k", "duplicate_key", "duplicate k: superseded by row 2", "A")],
        ),
        (
            _frame([0, 1, 2], k=["A", "A", "A"]),
            ["k"],
            [2],
            [
                (0, "k", "duplicate_key", "duplicate k: superseded by row 2", "A"),
                (1, "k", "duplicate_key", "duplicate k: superseded by row 2", "A"),
            ],
        ),
        (
            _frame([0, 1, 2, 3], k=["A", "B", "A", "B"]),
            ["k"],
            [2, 3],
            [
                (0, "k", "duplicate_key", "duplicate k: superseded by row 2", "A"),
                (1, "k", "duplicate_key", "duplicate k: superseded by row 3", "B"),
            ],
        ),
        (
            _frame([0, 1, 2], k=["A", "A", "A"], l=["L1", "L2", "L1"]),
            ["k", "l"],
            [1, 2],
            [(0, "k, l", "duplicate_key", "duplicate k, l: superseded by row 2", "A, L1")],
        ),
        (
            _frame([3, 8], k=["A", "A"]),
            ["k"],
            [8],
            [(3, "k", "duplicate_key", "duplicate k: superseded by row 8", "A")],
        ),
        (
            _frame([5, 2], k=["A", "A"]),
            ["k"],
            [5],
            [(2, "k", "duplicate_key", "duplicate k: superseded by row 5", "A")],
        ),
        (_frame([0, 1], k=["a", "A"]), ["k"], [0, 1], []),
        (
            _frame([0, 1], k=["A", "A"], w=[date(2026, 11, 23), date(2026, 11, 23)], n=[1.5, 1.5]),
            ["k", "w", "n"],
            [1],
            [(0, "k, w, n", "duplicate_key", "duplicate k, w, n: superseded by row 1", "A, 2026-11-23, 1.5")],
        ),
        (_frame([], k=[]).cast({"k": pl.String()}), ["k"], [], []),
    ],
    ids=[
        "no-duplicates",
        "last-wins",
        "three-times",
        "two-keys-interleaved",
        "composite-key",
        "rows-with-gaps",
        "unsorted-rows",
        "case-sensitive",
        "typed-key-values",
        "empty",
    ],
)
def test_keep_last(frame: pl.DataFrame, key: list[str], kept: list[int], warnings: list[tuple[Any, ...]]) -> None:
    rows, issues = keep_last(frame, key, key)
    assert rows.columns == frame.columns
    assert rows.get_column(ROW).to_list() == kept
    assert issues.schema == pl.Schema(ERROR_SCHEMA)
    assert issues.select("row", "field", "code", "message", "value").rows() == warnings


def test_keep_last_names_the_wire_key() -> None:
    frame = _frame([0, 1], sku=["A", "A"])
    _, warnings = keep_last(frame, ["sku"], ["skuId"])
    assert warnings.select("field", "message").rows() == [("skuId", "duplicate skuId: superseded by row 1")]


def test_keep_last_keeps_every_column_of_the_winner() -> None:
    frame = _frame([0, 1, 2], k=["A", "B", "A"], v=["first", "other", "last"])
    rows, _ = keep_last(frame, ["k"], ["k"])
    assert rows.rows() == [(1, "B", "other"), (2, "A", "last")]


MONDAYS = [
    ("monday-stays", date(2026, 11, 23), date(2026, 11, 23)),
    ("thursday", date(2026, 11, 26), date(2026, 11, 23)),
    ("sunday", date(2026, 11, 29), date(2026, 11, 23)),
    ("new-year-thursday", date(2026, 1, 1), date(2025, 12, 29)),
    ("new-year-friday-week-53", date(2021, 1, 1), date(2020, 12, 28)),
    ("first-sunday-of-year", date(2027, 1, 3), date(2026, 12, 28)),
    ("first-monday-of-year", date(2027, 1, 4), date(2027, 1, 4)),
    ("new-years-eve-tuesday", date(2024, 12, 31), date(2024, 12, 30)),
    ("leap-day", date(2024, 2, 29), date(2024, 2, 26)),
    ("sunday-after-leap-day", date(2024, 3, 3), date(2024, 2, 26)),
    ("epoch-thursday", date(1970, 1, 1), date(1969, 12, 29)),
    ("before-epoch", date(1969, 12, 31), date(1969, 12, 29)),
    ("far-past", date(1900, 3, 1), date(1900, 2, 26)),
    ("far-future", date(9999, 12, 31), date(9999, 12, 27)),
]


@pytest.mark.parametrize(("day", "monday"), [(d, m) for _, d, m in MONDAYS], ids=[name for name, _, _ in MONDAYS])
def test_week_start(day: date, monday: date) -> None:
    assert pl.select(week_start(pl.lit(day)).alias("w")).item() == monday


def test_week_start_is_the_iso_monday_of_every_day_of_a_decade() -> None:
    days = pl.DataFrame({"day": pl.date_range(date(2019, 12, 1), date(2030, 1, 31), eager=True)})
    weeks = days.with_columns(week_start(pl.col("day")).alias("monday")).rows()
    assert len(weeks) == 3715
    assert all(monday == day - datetime.timedelta(days=day.weekday()) for day, monday in weeks)
    assert all(monday.isocalendar()[:2] == day.isocalendar()[:2] for day, monday in weeks)


def test_week_start_keeps_null() -> None:
    assert pl.select(week_start(pl.lit(None, dtype=pl.Date())).alias("w")).item() is None


@pytest.mark.parametrize(
    ("organization", "location", "normalized"),
    [
        ("acme", "WH1", "acme-WH1"),
        ("org-1", "S1", "org-1-S1"),
        ("acme", "acme-WH1", "acme-acme-WH1"),
        ("acme", "Entrepôt 3", "acme-Entrepôt 3"),
        ("acme", None, None),
    ],
    ids=["plain", "dashed-organization", "already-prefixed-is-prefixed-again", "unicode", "null"],
)
def test_normalize_location(organization: str, location: str | None, normalized: str | None) -> None:
    frame = pl.DataFrame({"l": [location]}, schema={"l": pl.String()})
    assert frame.select(normalize_location(pl.col("l"), organization)).item() == normalized


def test_location_references_are_unique_normalized_with_their_code() -> None:
    frame = pl.DataFrame({"loc": ["L2", "L1", "L2", "L1"]})
    references = location_references(frame, "loc", "acme")
    assert references.sort("location_id").rows() == [("acme-L1", "L1"), ("acme-L2", "L2")]
    assert references.columns == ["location_id", "code"]


def test_id_references_are_unique() -> None:
    frame = pl.DataFrame({"sku": ["B", "A", "B"]})
    references = id_references(frame, "sku")
    assert references.columns == ["external_id"]
    assert sorted(references.get_column("external_id").to_list()) == ["A", "B"]


def test_keep_lines_of_keeps_lines_of_kept_rows_in_order_numbered_from_one_with_their_key() -> None:
    lines = pl.DataFrame(
        {ROW: [0, 0, 1, 2, 2, 2], LINE: [0, 1, 0, 0, 1, 2], "sku": ["a", "b", "c", "d", "e", "f"]},
        schema={ROW: pl.Int64(), LINE: pl.Int64(), "sku": pl.String()},
    )
    rows = _frame([2, 0], k=["X", "Y"])
    kept = keep_lines_of(lines, rows, "k")
    assert kept.rows() == [
        (0, 0, "a", "Y", 1),
        (0, 1, "b", "Y", 2),
        (2, 0, "d", "X", 1),
        (2, 1, "e", "X", 2),
        (2, 2, "f", "X", 3),
    ]
    assert kept.schema["line_number"] == pl.Int64()


def _reference_lines_of(lines: pl.DataFrame, rows: pl.DataFrame, key: str) -> pl.DataFrame:
    ids = [c for c in (ROW, JOB) if c in rows.columns]
    joined = lines.join(rows.select(*ids, key), on=ids, how="inner", maintain_order="left")
    return joined.with_columns((pl.col(LINE) + 1).cast(pl.Int64()).alias("line_number"))


@given(
    headers=st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.integers(0, 3)), max_size=12),
    groups=st.booleans(),
    shuffled=st.booleans(),
    chunks=st.integers(1, 3),
)
@settings(max_examples=200, deadline=None)
def test_keep_lines_of_equals_a_join_of_the_lines_to_their_kept_headers(
    headers: list[tuple[int, bool, int]], groups: bool, shuffled: bool, chunks: int
) -> None:
    # each header: its job, whether it survived de-duplication, how many lines it has; in row order (as one
    # job's validation makes them, the searched path) or not, one job or a group (the joined path)
    numbers = [(job if groups else 0, row) for row, (job, _, _) in enumerate(headers)]
    kept = [n for n, (_, survived, _) in zip(numbers, headers, strict=True) if survived]
    if shuffled:
        kept.reverse()
    rows = pl.DataFrame({ROW: [r for _, r in kept], "k": [f"K{j}-{r}" for j, r in kept], JOB: [j for j, _ in kept]})
    line_numbers = [(n, line) for n, (_, _, count) in zip(numbers, headers, strict=True) for line in range(count)]
    lines = pl.DataFrame(
        {
            ROW: [r for (_, r), _ in line_numbers],
            LINE: [line for _, line in line_numbers],
            JOB: [j for (j, _), _ in line_numbers],
        },
        schema={ROW: pl.Int64(), LINE: pl.Int64(), JOB: pl.Int64()},
    ).with_columns(sku=pl.format("S{}", pl.col(LINE)))
    rows = rows.cast({ROW: pl.Int64(), JOB: pl.Int64()})
    if not groups:
        rows, lines = rows.drop(JOB), lines.drop(JOB)
    size = max(1, -(-lines.height // chunks))
    lines = pl.concat([lines.slice(start, size) for start in range(0, max(lines.height, 1), size)], rechunk=False)
    assert_frame_equal(keep_lines_of(lines, rows, "k"), _reference_lines_of(lines, rows, "k"))


def test_keep_lines_of_shares_the_lines_columns_in_their_chunks() -> None:
    # validated lines come in one chunk per validation chunk: selecting from the result realigns (copies) nothing
    parts = [pl.DataFrame({ROW: [r, r], LINE: [0, 1], "sku": ["a", "b"]}) for r in range(3)]
    lines = pl.concat(parts, rechunk=False)
    kept = keep_lines_of(lines, _frame([0, 1, 2], k=["X", "Y", "Z"]), "k")
    assert kept.get_column("k").to_list() == ["X", "X", "Y", "Y", "Z", "Z"]
    assert {tuple(kept.get_column(c).chunk_lengths()) for c in kept.columns} == {(2, 2, 2)}


def test_require_validated_refuses_a_kind_with_lines_validated_without_them() -> None:
    validated = Validated(rows=_frame([0], k=["A"]), lines=None, errors=pl.DataFrame(schema=ERROR_SCHEMA))
    with pytest.raises(ValueError, match="validate it with its lines frame"):
        require_validated(validated)
    for kind, element in [
        ("purchase-orders", {"externalPoNumber": "P", "supplierId": "S", "destinationLocationId": "D", "lines": []}),
        ("orders", {"externalOrderId": "O"}),
    ]:
        headers = validate_elements(kind, [element]).rows  # a header frame of the kind; its lines are left out
        with pytest.raises(ValueError, match="validate it with its lines frame"):
            KINDS[kind].prepare(Validated(rows=headers, lines=None, errors=validated.errors), "acme")


def test_prepared_defaults() -> None:
    prepared = Prepared(rows=pl.DataFrame())
    assert prepared.lines is None and prepared.references == {}
    assert prepared.warnings.is_empty() and prepared.warnings.schema == pl.Schema(ERROR_SCHEMA)


def test_preparers_cover_the_six_kinds() -> None:
    assert sorted(KINDS) == ["catalog", "demand-history", "inventory", "orders", "purchase-orders", "suppliers"]


def test_transforms_are_pure() -> None:
    standard, other = top_level_imports("transforms")
    assert other == {"contracts", "polars", "transforms"}
    assert not standard & IMPURE_STANDARD_MODULES
