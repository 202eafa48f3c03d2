"""Demand-history contract: skuId, locationId, an ISO weekStarting, optional channel and demands >= 0."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from tests.frames import Batch, Case, Raw, issues, validate_elements

BASE = {"skuId": "A", "locationId": "L", "weekStarting": "2026-11-26"}
DAY = datetime.date(2026, 11, 26)


def _record(
    week: datetime.date | None = DAY,
    channel: str | None = None,
    actual: float | None = None,
    forecast: float | None = None,
) -> dict[str, Any]:
    return {
        "skuId": "A",
        "locationId": "L",
        "weekStarting": week,
        "channel": channel,
        "actualDemand": actual,
        "forecastedDemand": forecast,
    }


# The contract reads the calendar date; bucketing to Monday is the transform's job.
ACCEPTED: list[Case] = [
    ("date", BASE, _record()),
    ("date-padded", {**BASE, "weekStarting": " 2026-11-26 "}, _record()),
    ("timestamp-utc", {**BASE, "weekStarting": "2026-11-29T23:00:00Z"}, _record(datetime.date(2026, 11, 29))),
    # an instant: its UTC date (2026-11-25T19:30Z), CONTRACT.md
    ("timestamp-offset", {**BASE, "weekStarting": "2026-11-26T01:00:00+05:30"}, _record(datetime.date(2026, 11, 25))),
    ("timestamp-fraction", {**BASE, "weekStarting": "2026-11-26 10:00:00.5"}, _record()),
    ("leap-day", {**BASE, "weekStarting": "2028-02-29"}, _record(datetime.date(2028, 2, 29))),
    ("channel", {**BASE, "channel": "web"}, _record(channel="web")),
    ("channel-trimmed", {**BASE, "channel": "  Retail "}, _record(channel="Retail")),
    ("channel-empty-is-missing", {**BASE, "channel": ""}, _record()),
    ("channel-number", {**BASE, "channel": 3}, _record(channel="3")),
    ("channel-255", {**BASE, "channel": "c" * 255}, _record(channel="c" * 255)),
    ("demands", {**BASE, "actualDemand": 3, "forecastedDemand": 4.5}, _record(actual=3.0, forecast=4.5)),
    (
        "demands-numeric-strings",
        {**BASE, "actualDemand": "12", "forecastedDemand": " 3.5 "},
        _record(actual=12.0, forecast=3.5),
    ),
    ("demands-zero", {**BASE, "actualDemand": 0, "forecastedDemand": "0"}, _record(actual=0.0, forecast=0.0)),
    ("ids-trimmed", {**BASE, "skuId": " A ", "locationId": "\tL"}, _record()),
]

REJECTED: list[Case] = [
    ("sku-missing", {"locationId": "L", "weekStarting": "2026-11-26"}, [("skuId", "required", None)]),
    ("location-blank", {**BASE, "locationId": " "}, [("locationId", "required", " ")]),
    ("sku-256", {**BASE, "skuId": "s" * 256}, [("skuId", "too_long", "s" * 200)]),
    ("location-object", {**BASE, "locationId": {"id": "L"}}, [("locationId", "invalid_type", '{"id":"L"}')]),
    ("week-missing", {"skuId": "A", "locationId": "L"}, [("weekStarting", "required", None)]),
    ("week-null", {**BASE, "weekStarting": None}, [("weekStarting", "required", None)]),
    ("week-empty", {**BASE, "weekStarting": ""}, [("weekStarting", "invalid_date", "")]),
    ("week-february-30", {**BASE, "weekStarting": "2026-02-30"}, [("weekStarting", "invalid_date", "2026-02-30")]),
    ("week-not-leap", {**BASE, "weekStarting": "2026-02-29"}, [("weekStarting", "invalid_date", "2026-02-29")]),
    ("week-month-13", {**BASE, "weekStarting": "2026-13-01"}, [("weekStarting", "invalid_date", "2026-13-01")]),
    (
        "week-bad-time",
        {**BASE, "weekStarting": "2026-11-26T25:61:00"},
        [("weekStarting", "invalid_date", "2026-11-26T25:61:00")],
    ),
    ("week-us-format", {**BASE, "weekStarting": "11/26/2026"}, [("weekStarting", "invalid_date", "11/26/2026")]),
    ("week-text", {**BASE, "weekStarting": "last week"}, [("weekStarting", "invalid_date", "last week")]),
    ("week-number", {**BASE, "weekStarting": 20261126}, [("weekStarting", "invalid_type", "20261126")]),
    ("week-boolean", {**BASE, "weekStarting": True}, [("weekStarting", "invalid_type", "true")]),
    ("week-array", {**BASE, "weekStarting": ["2026-11-26"]}, [("weekStarting", "invalid_type", '["2026-11-26"]')]),
    ("channel-256", {**BASE, "channel": "c" * 256}, [("channel", "too_long", "c" * 200)]),
    ("channel-boolean", {**BASE, "channel": False}, [("channel", "invalid_type", "false")]),
    ("actual-negative", {**BASE, "actualDemand": -1}, [("actualDemand", "invalid_value", "-1")]),
    ("actual-text", {**BASE, "actualDemand": "many"}, [("actualDemand", "invalid_type", "many")]),
    ("actual-overflow", {**BASE, "actualDemand": Raw("1e400")}, [("actualDemand", "invalid_value", "1e400")]),
    ("forecast-negative-string", {**BASE, "forecastedDemand": "-2"}, [("forecastedDemand", "invalid_value", "-2")]),
    ("forecast-nan", {**BASE, "forecastedDemand": "NaN"}, [("forecastedDemand", "invalid_value", "NaN")]),
    ("forecast-object", {**BASE, "forecastedDemand": {"v": 1}}, [("forecastedDemand", "invalid_type", '{"v":1}')]),
    (
        "every-problem-in-field-order",
        {"forecastedDemand": "inf", "actualDemand": -1, "channel": [], "weekStarting": "2026-02-30", "locationId": ""},
        [
            ("skuId", "required", None),
            ("locationId", "required", ""),
            ("weekStarting", "invalid_date", "2026-02-30"),
            ("channel", "invalid_type", "[]"),
            ("actualDemand", "invalid_value", "-1"),
            ("forecastedDemand", "invalid_value", "inf"),
        ],
    ),
    ("not-an-object", 3.5, [(None, "invalid_type", "3.5")]),
]

ACCEPTED_BATCH = Batch("demand-history", ACCEPTED)
REJECTED_BATCH = Batch("demand-history", REJECTED)


@pytest.mark.parametrize(("index", "expected"), Batch.params(ACCEPTED))
def test_accepted(index: int, expected: dict[str, Any]) -> None:
    assert ACCEPTED_BATCH.errors(index) == []
    assert ACCEPTED_BATCH.row(index) == expected


@pytest.mark.parametrize(("index", "expected"), Batch.params(REJECTED))
def test_rejected(index: int, expected: list[tuple[Any, ...]]) -> None:
    assert REJECTED_BATCH.errors(index) == expected
    assert REJECTED_BATCH.row(index) is None


def test_date_messages() -> None:
    validated = validate_elements(
        "demand-history", [{**BASE, "weekStarting": "2026-02-30"}, {**BASE, "weekStarting": 1}]
    )
    assert validated.errors.get_column("message").to_list() == [
        "weekStarting is not a valid calendar date (YYYY-MM-DD)",
        "weekStarting must be an ISO date (YYYY-MM-DD) or timestamp",
    ]


def test_the_end_to_end_example_at_the_contract() -> None:
    validated = validate_elements(
        "demand-history",
        [
            {"skuId": "A", "locationId": "L", "weekStarting": "2026-11-26", "actualDemand": 3},
            {"skuId": "A", "locationId": "L", "weekStarting": "2026-11-29T23:00:00Z", "actualDemand": 5},
            {"skuId": "A", "locationId": "L", "weekStarting": "2026-12-01", "channel": "web", "forecastedDemand": 7},
            {"skuId": "A", "locationId": "L", "weekStarting": "2026-02-30"},
        ],
    )
    assert issues(validated.errors) == [(3, "weekStarting", "invalid_date", "2026-02-30")]
    assert validated.rows.get_column("__row").to_list() == [0, 1, 2]
