"""Inventory contract: skuId and locationId (identifiers), three optional quantities >= 0."""

from __future__ import annotations

from typing import Any

import pytest

from tests.frames import Batch, Case, Raw, issues, validate_elements

BASE = {"skuId": "S", "locationId": "L"}
QUANTITIES = ("quantityOnHand", "quantityReserved", "reorderPoint")


def _level(
    sku: str = "S", location: str = "L", on_hand: Any = None, reserved: Any = None, reorder: Any = None
) -> dict[str, Any]:
    return {
        "skuId": sku,
        "locationId": location,
        "quantityOnHand": on_hand,
        "quantityReserved": reserved,
        "reorderPoint": reorder,
    }


ACCEPTED: list[Case] = [
    ("ids-only-quantities-null", BASE, _level()),
    ("explicit-nulls", {**BASE, "quantityOnHand": None, "reorderPoint": None}, _level()),
    (
        "numbers",
        {**BASE, "quantityOnHand": 10, "quantityReserved": 2.5, "reorderPoint": 0},
        _level(on_hand=10.0, reserved=2.5, reorder=0.0),
    ),
    (
        "numeric-strings",
        {**BASE, "quantityOnHand": "12", "quantityReserved": " 3.5 ", "reorderPoint": "1e2"},
        _level(on_hand=12.0, reserved=3.5, reorder=100.0),
    ),
    (
        "zeros",
        {**BASE, "quantityOnHand": 0, "quantityReserved": "0", "reorderPoint": 0.0},
        _level(on_hand=0.0, reserved=0.0, reorder=0.0),
    ),
    ("reserved-above-on-hand", {**BASE, "quantityOnHand": 1, "quantityReserved": 5}, _level(on_hand=1.0, reserved=5.0)),
    ("large-integer", {**BASE, "quantityOnHand": Raw("12345678901234567890")}, _level(on_hand=12345678901234567890.0)),
    ("ids-trimmed", {"skuId": "  S-1 ", "locationId": "\tWH 1\n"}, _level("S-1", "WH 1")),
    ("ids-numbers", {"skuId": 100, "locationId": 7}, _level("100", "7")),
    ("ids-255", {"skuId": "s" * 255, "locationId": "l" * 255}, _level("s" * 255, "l" * 255)),
    ("ids-unicode", {"skuId": "Thé-1", "locationId": "Zürich"}, _level("Thé-1", "Zürich")),
]

REJECTED: list[Case] = [
    ("sku-missing", {"locationId": "L"}, [("skuId", "required", None)]),
    ("location-missing", {"skuId": "S"}, [("locationId", "required", None)]),
    ("both-missing", {}, [("skuId", "required", None), ("locationId", "required", None)]),
    ("sku-empty", {**BASE, "skuId": ""}, [("skuId", "required", "")]),
    ("location-blank", {**BASE, "locationId": "   "}, [("locationId", "required", "   ")]),
    ("sku-256", {**BASE, "skuId": "s" * 256}, [("skuId", "too_long", "s" * 200)]),
    ("location-256", {**BASE, "locationId": "l" * 256}, [("locationId", "too_long", "l" * 200)]),
    ("sku-object", {**BASE, "skuId": {"nested": True}}, [("skuId", "invalid_type", '{"nested":true}')]),
    ("location-array", {**BASE, "locationId": ["L"]}, [("locationId", "invalid_type", '["L"]')]),
    ("sku-boolean", {**BASE, "skuId": False}, [("skuId", "invalid_type", "false")]),
    ("on-hand-negative", {**BASE, "quantityOnHand": -1}, [("quantityOnHand", "invalid_value", "-1")]),
    ("reserved-negative-string", {**BASE, "quantityReserved": "-0.5"}, [("quantityReserved", "invalid_value", "-0.5")]),
    ("reorder-negative", {**BASE, "reorderPoint": -3}, [("reorderPoint", "invalid_value", "-3")]),
    ("on-hand-text", {**BASE, "quantityOnHand": "abc"}, [("quantityOnHand", "invalid_type", "abc")]),
    ("on-hand-empty-string", {**BASE, "quantityOnHand": ""}, [("quantityOnHand", "invalid_type", "")]),
    ("on-hand-boolean", {**BASE, "quantityOnHand": True}, [("quantityOnHand", "invalid_type", "true")]),
    ("reserved-object", {**BASE, "quantityReserved": {"n": 1}}, [("quantityReserved", "invalid_type", '{"n":1}')]),
    ("reorder-array", {**BASE, "reorderPoint": [1]}, [("reorderPoint", "invalid_type", "[1]")]),
    ("on-hand-overflow", {**BASE, "quantityOnHand": Raw("1e400")}, [("quantityOnHand", "invalid_value", "1e400")]),
    (
        "reserved-overflow-string",
        {**BASE, "quantityReserved": "1e400"},
        [("quantityReserved", "invalid_value", "1e400")],
    ),
    ("reorder-nan", {**BASE, "reorderPoint": "NaN"}, [("reorderPoint", "invalid_value", "NaN")]),
    ("on-hand-inf", {**BASE, "quantityOnHand": "inf"}, [("quantityOnHand", "invalid_value", "inf")]),
    (
        "on-hand-negative-infinity",
        {**BASE, "quantityOnHand": Raw("-1e400")},
        [("quantityOnHand", "invalid_value", "-1e400")],
    ),
    (
        "every-problem-in-field-order",
        {"reorderPoint": "NaN", "quantityReserved": -1, "quantityOnHand": "x", "locationId": "l" * 300, "skuId": [1]},
        [
            ("skuId", "invalid_type", "[1]"),
            ("locationId", "too_long", "l" * 200),
            ("quantityOnHand", "invalid_type", "x"),
            ("quantityReserved", "invalid_value", "-1"),
            ("reorderPoint", "invalid_value", "NaN"),
        ],
    ),
    ("not-an-object", [BASE], [(None, "invalid_type", '[{"skuId":"S","locationId":"L"}]')]),
    ("null-element", None, [(None, "invalid_type", None)]),
]

ACCEPTED_BATCH = Batch("inventory", ACCEPTED)
REJECTED_BATCH = Batch("inventory", REJECTED)


@pytest.mark.parametrize(("index", "expected"), Batch.params(ACCEPTED))
def test_accepted(index: int, expected: dict[str, Any]) -> None:
    assert ACCEPTED_BATCH.errors(index) == []
    assert ACCEPTED_BATCH.row(index) == expected


@pytest.mark.parametrize(("index", "expected"), Batch.params(REJECTED))
def test_rejected(index: int, expected: list[tuple[Any, ...]]) -> None:
    assert REJECTED_BATCH.errors(index) == expected
    assert REJECTED_BATCH.row(index) is None


@pytest.mark.parametrize("field", QUANTITIES)
def test_negative_quantity_message(field: str) -> None:
    validated = validate_elements("inventory", [{**BASE, field: -1}, {**BASE, field: "NaN"}, {**BASE, field: "x"}])
    assert validated.errors.get_column("message").to_list() == [
        f"{field} must be >= 0",
        f"{field} must be a finite number",
        f"{field} must be a number",
    ]


def test_the_end_to_end_example_row_by_row() -> None:
    """The rows of tests/service/test_imports.py, checked at the contract alone."""
    validated = validate_elements(
        "inventory",
        [
            {"skuId": "OK-1", "locationId": "L"},
            {"skuId": "X", "locationId": "L", "quantityOnHand": "abc"},
            {"skuId": {"nested": True}, "locationId": "", "quantityReserved": -1},
            {"locationId": "L", "quantityOnHand": "1e400"},
            7,
            {"skuId": "OK-2", "locationId": "L", "quantityOnHand": "12.5"},
        ],
    )
    assert issues(validated.errors) == [
        (1, "quantityOnHand", "invalid_type", "abc"),
        (2, "skuId", "invalid_type", '{"nested":true}'),
        (2, "locationId", "required", ""),
        (2, "quantityReserved", "invalid_value", "-1"),
        (3, "skuId", "required", None),
        (3, "quantityOnHand", "invalid_value", "1e400"),
        (4, None, "invalid_type", "7"),
    ]
    assert validated.rows.rows() == [(0, "OK-1", "L", None, None, None), (5, "OK-2", "L", 12.5, None, None)]
