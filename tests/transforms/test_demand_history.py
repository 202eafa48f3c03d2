"""Demand records -> demand_history: ISO-week buckets, channel and demand defaults, last-wins per bucket."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from tests.frames import Batch, Case, issues, prepare_elements, records

date = datetime.date
KEY = "skuId, locationId, weekStarting, channel"
COLUMNS = ["sku_id", "location_id", "week_starting", "channel", "actual_demand", "forecasted_demand"]


def _record(week: str, **fields: Any) -> dict[str, Any]:
    return {"skuId": "A", "locationId": "L", "weekStarting": week, **fields}


WEEKS: list[Case] = [
    ("monday", _record("2026-11-23"), date(2026, 11, 23)),
    ("thursday", _record("2026-11-26"), date(2026, 11, 23)),
    ("sunday", _record("2026-11-29"), date(2026, 11, 23)),
    ("next-monday", _record("2026-11-30"), date(2026, 11, 30)),
    ("timestamp-sunday-night", _record("2026-11-29T23:00:00Z"), date(2026, 11, 23)),
    ("timestamp-monday-midnight", _record("2026-11-30T00:00:00Z"), date(2026, 11, 30)),
    ("timestamp-fraction", _record("2026-11-29 23:59:59.999"), date(2026, 11, 23)),
    ("timestamp-padded-offset", _record(" 2026-11-26T10:00:00+05:30 "), date(2026, 11, 23)),
    ("new-year-2026-is-a-thursday", _record("2026-01-01"), date(2025, 12, 29)),
    ("sunday-in-next-year", _record("2027-01-03"), date(2026, 12, 28)),
    ("first-monday-2027", _record("2027-01-04"), date(2027, 1, 4)),
    ("week-53-of-2020", _record("2021-01-01T12:00:00Z"), date(2020, 12, 28)),
    ("new-years-eve-2024", _record("2024-12-31"), date(2024, 12, 30)),
    ("leap-day", _record("2024-02-29"), date(2024, 2, 26)),
]

DEFAULTS: list[Case] = [
    ("all-defaults", _record("2026-11-26"), ("ALL", 0.0, 0.0)),
    (
        "nulls-default",
        _record("2026-11-26", channel=None, actualDemand=None, forecastedDemand=None),
        ("ALL", 0.0, 0.0),
    ),
    ("forecast-defaults-to-actual", _record("2026-11-26", actualDemand=3), ("ALL", 3.0, 3.0)),
    ("forecast-defaults-to-numeric-string-actual", _record("2026-11-26", actualDemand="5.5"), ("ALL", 5.5, 5.5)),
    ("forecast-without-actual", _record("2026-11-26", forecastedDemand=7), ("ALL", 0.0, 7.0)),
    ("forecast-zero-is-kept", _record("2026-11-26", actualDemand=3, forecastedDemand=0), ("ALL", 3.0, 0.0)),
    ("both-given", _record("2026-11-26", actualDemand=3, forecastedDemand=4), ("ALL", 3.0, 4.0)),
    ("channel-given", _record("2026-11-26", channel="web"), ("web", 0.0, 0.0)),
    ("channel-trimmed", _record("2026-11-26", channel=" Retail "), ("Retail", 0.0, 0.0)),
    ("channel-empty-defaults", _record("2026-11-26", channel=""), ("ALL", 0.0, 0.0)),
    ("channel-blank-defaults", _record("2026-11-26", channel="   "), ("ALL", 0.0, 0.0)),
]

DUPLICATES: list[Case] = [
    (
        "end-to-end-example",
        [
            _record("2026-11-26", actualDemand=3),
            _record("2026-11-29T23:00:00Z", actualDemand=5),
            _record("2026-12-01", channel="web", forecastedDemand=7),
            _record("2026-02-30"),
        ],
        [(date(2026, 11, 23), "ALL", 5.0, 5.0), (date(2026, 11, 30), "web", 0.0, 7.0)],
        [(0, KEY, "duplicate_key", "A, L, 2026-11-23, ALL")],
    ),
    (
        "three-days-of-one-week",
        [
            _record("2026-11-23", actualDemand=1),
            _record("2026-11-24", actualDemand=2),
            _record("2026-11-29", actualDemand=3),
        ],
        [(date(2026, 11, 23), "ALL", 3.0, 3.0)],
        [(0, KEY, "duplicate_key", "A, L, 2026-11-23, ALL"), (1, KEY, "duplicate_key", "A, L, 2026-11-23, ALL")],
    ),
    (
        "explicit-all-meets-the-default",
        [_record("2026-11-26", channel="ALL", actualDemand=1), _record("2026-11-27", actualDemand=2)],
        [(date(2026, 11, 23), "ALL", 2.0, 2.0)],
        [(0, KEY, "duplicate_key", "A, L, 2026-11-23, ALL")],
    ),
    (
        "other-channel-is-another-key",
        [_record("2026-11-26", actualDemand=1), _record("2026-11-26", channel="web", actualDemand=2)],
        [(date(2026, 11, 23), "ALL", 1.0, 1.0), (date(2026, 11, 23), "web", 2.0, 2.0)],
        [],
    ),
    (
        "sunday-and-monday-are-two-weeks",
        [_record("2026-11-29", actualDemand=1), _record("2026-11-30", actualDemand=2)],
        [(date(2026, 11, 23), "ALL", 1.0, 1.0), (date(2026, 11, 30), "ALL", 2.0, 2.0)],
        [],
    ),
    (
        "week-across-new-year",
        [_record("2027-01-03", actualDemand=1), _record("2026-12-28", actualDemand=2)],
        [(date(2026, 12, 28), "ALL", 2.0, 2.0)],
        [(0, KEY, "duplicate_key", "A, L, 2026-12-28, ALL")],
    ),
    (
        "invalid-rows-take-no-part",
        [
            _record("2026-11-26", actualDemand=1),
            _record("2026-11-27", actualDemand=-2),
            _record("2026-11-28", actualDemand="x"),
        ],
        [(date(2026, 11, 23), "ALL", 1.0, 1.0)],
        [],
    ),
]

WEEKS_BATCH = Batch("demand-history", WEEKS)
DEFAULTS_BATCH = Batch("demand-history", DEFAULTS)
DUPLICATES_BATCH = Batch("demand-history", DUPLICATES, arrays=True)


@pytest.mark.parametrize(("index", "monday"), Batch.params(WEEKS))
def test_week_is_bucketed_to_its_monday(index: int, monday: date) -> None:
    prepared = WEEKS_BATCH.prepared(index)
    assert prepared.rows.get_column("week_starting").to_list() == [monday]


@pytest.mark.parametrize(("index", "expected"), Batch.params(DEFAULTS))
def test_defaults(index: int, expected: tuple[str, float, float]) -> None:
    prepared = DEFAULTS_BATCH.prepared(index)
    assert prepared.rows.columns == COLUMNS
    assert prepared.rows.rows() == [("A", "acme-L", date(2026, 11, 23), *expected)]
    assert prepared.warnings.is_empty()


@pytest.mark.parametrize(("index", "kept", "warnings"), Batch.params(DUPLICATES))
def test_duplicates_per_bucket(index: int, kept: list[tuple[Any, ...]], warnings: list[tuple[Any, ...]]) -> None:
    prepared = DUPLICATES_BATCH.prepared(index)
    assert prepared.rows.select("week_starting", "channel", "actual_demand", "forecasted_demand").rows() == kept
    assert issues(prepared.warnings) == warnings


def test_stub_references_and_normalized_location() -> None:
    prepared = prepare_elements(
        "demand-history",
        [
            {"skuId": "A", "locationId": "L1", "weekStarting": "2026-11-26"},
            {"skuId": "B", "locationId": " L2 ", "weekStarting": "2026-11-26"},
            {"skuId": "A", "locationId": "L2", "weekStarting": "2026-12-03"},
            {"skuId": "Z", "locationId": "L9", "weekStarting": "2026-02-30"},
        ],
        "org-1",
    )
    assert prepared.rows.get_column("location_id").to_list() == ["org-1-L1", "org-1-L2", "org-1-L2"]
    assert sorted(prepared.references) == ["locations", "products"]
    assert records(prepared.references["products"], "external_id") == [{"external_id": "A"}, {"external_id": "B"}]
    assert records(prepared.references["locations"], "location_id") == [
        {"location_id": "org-1-L1", "code": "L1"},
        {"location_id": "org-1-L2", "code": "L2"},
    ]
    assert prepared.lines is None


def test_warning_message_names_the_superseding_row() -> None:
    prepared = prepare_elements(
        "demand-history", [_record("2026-11-26"), _record("2026-12-26"), _record("2026-11-23"), _record("2026-12-01")]
    )
    assert prepared.warnings.get_column("message").to_list() == [f"duplicate {KEY}: superseded by row 2"]
