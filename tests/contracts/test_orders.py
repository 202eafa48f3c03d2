"""Orders contract: externalOrderId and non-empty lines of (skuId, quantity > 0, locationId)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.frames import Batch, Case, Raw, issues, validate_elements

LINE = {"skuId": "A", "quantity": 1, "locationId": "S1"}


def _order(number: Any = "O-1", **fields: Any) -> dict[str, Any]:
    return {"externalOrderId": number, "lines": [LINE], **fields}


HEADERS_ACCEPTED: list[Case] = [
    ("plain", _order(), {"externalOrderId": "O-1"}),
    ("trimmed", _order("  O-1\t"), {"externalOrderId": "O-1"}),
    ("number", _order(123), {"externalOrderId": "123"}),
    ("255", _order("o" * 255), {"externalOrderId": "o" * 255}),
    ("unicode", _order("Commande-ü"), {"externalOrderId": "Commande-ü"}),
    ("unknown-fields-ignored", _order(customer={"id": 1}), {"externalOrderId": "O-1"}),
]

HEADERS_REJECTED: list[Case] = [
    ("id-missing", {"lines": [LINE]}, [("externalOrderId", "required", None)]),
    ("id-empty", _order(""), [("externalOrderId", "required", "")]),
    ("id-blank", _order("   "), [("externalOrderId", "required", "   ")]),
    ("id-256", _order("o" * 256), [("externalOrderId", "too_long", "o" * 200)]),
    ("id-object", _order({"id": 1}), [("externalOrderId", "invalid_type", '{"id":1}')]),
    ("id-array", _order([1]), [("externalOrderId", "invalid_type", "[1]")]),
    ("id-boolean", _order(False), [("externalOrderId", "invalid_type", "false")]),
    ("lines-missing", {"externalOrderId": "O"}, [("lines", "required", None)]),
    ("lines-null", _order(lines=None), [("lines", "required", None)]),
    ("lines-empty", _order(lines=[]), [("lines", "empty_lines", None)]),
    (
        "lines-object",
        _order(lines={"0": LINE}),
        [("lines", "invalid_type", '{"0":{"skuId":"A","quantity":1,"locationId":"S1"}}')],
    ),
    ("lines-number", _order(lines=3), [("lines", "invalid_type", "3")]),
    (
        "every-problem-in-field-order",
        {"lines": "none", "externalOrderId": True},
        [("externalOrderId", "invalid_type", "true"), ("lines", "invalid_type", "none")],
    ),
    ("not-an-object", ["O-1"], [(None, "invalid_type", '["O-1"]')]),
]

LINES_ACCEPTED: list[Case] = [
    ("numbers", LINE, {"__line": 0, "skuId": "A", "quantity": 1.0, "locationId": "S1"}),
    (
        "fractional-quantity",
        {**LINE, "quantity": 2.5},
        {"__line": 0, "skuId": "A", "quantity": 2.5, "locationId": "S1"},
    ),
    ("numeric-string", {**LINE, "quantity": " 3 "}, {"__line": 0, "skuId": "A", "quantity": 3.0, "locationId": "S1"}),
    (
        "ids-trimmed",
        {"skuId": " A ", "quantity": 1, "locationId": "\tS1 "},
        {"__line": 0, "skuId": "A", "quantity": 1.0, "locationId": "S1"},
    ),
    (
        "ids-numbers",
        {"skuId": 5, "quantity": 1, "locationId": 9},
        {"__line": 0, "skuId": "5", "quantity": 1.0, "locationId": "9"},
    ),
]

LINES_REJECTED: list[Case] = [
    ("sku-missing", {"quantity": 1, "locationId": "S1"}, [("lines[0].skuId", "required", None)]),
    ("sku-256", {**LINE, "skuId": "k" * 256}, [("lines[0].skuId", "too_long", "k" * 200)]),
    ("sku-array", {**LINE, "skuId": ["A"]}, [("lines[0].skuId", "invalid_type", '["A"]')]),
    ("quantity-missing", {"skuId": "A", "locationId": "S1"}, [("lines[0].quantity", "required", None)]),
    ("quantity-zero", {**LINE, "quantity": 0}, [("lines[0].quantity", "invalid_value", "0")]),
    ("quantity-negative", {**LINE, "quantity": -1}, [("lines[0].quantity", "invalid_value", "-1")]),
    ("quantity-text", {**LINE, "quantity": "1 box"}, [("lines[0].quantity", "invalid_type", "1 box")]),
    ("quantity-object", {**LINE, "quantity": {"n": 1}}, [("lines[0].quantity", "invalid_type", '{"n":1}')]),
    ("quantity-infinity", {**LINE, "quantity": "Infinity"}, [("lines[0].quantity", "invalid_value", "Infinity")]),
    ("quantity-overflow", {**LINE, "quantity": Raw("1e400")}, [("lines[0].quantity", "invalid_value", "1e400")]),
    ("location-missing", {"skuId": "A", "quantity": 1}, [("lines[0].locationId", "required", None)]),
    ("location-empty", {**LINE, "locationId": ""}, [("lines[0].locationId", "required", "")]),
    ("location-256", {**LINE, "locationId": "l" * 256}, [("lines[0].locationId", "too_long", "l" * 200)]),
    ("location-boolean", {**LINE, "locationId": True}, [("lines[0].locationId", "invalid_type", "true")]),
    (
        "every-problem-in-field-order",
        {"locationId": "", "quantity": "NaN", "skuId": {"a": 1}},
        [
            ("lines[0].skuId", "invalid_type", '{"a":1}'),
            ("lines[0].quantity", "invalid_value", "NaN"),
            ("lines[0].locationId", "required", ""),
        ],
    ),
    ("line-string", "A", [("lines[0]", "invalid_type", '"A"')]),
    ("line-boolean", False, [("lines[0]", "invalid_type", "false")]),
    ("line-null", None, [("lines[0]", "invalid_type", None)]),
]

HEADERS_ACCEPTED_BATCH = Batch("orders", HEADERS_ACCEPTED)
HEADERS_REJECTED_BATCH = Batch("orders", HEADERS_REJECTED)
LINES_ACCEPTED_BATCH = Batch("orders", [(name, _order(lines=[line]), None) for name, line, _ in LINES_ACCEPTED])
LINES_REJECTED_BATCH = Batch("orders", [(name, _order(lines=[line]), None) for name, line, _ in LINES_REJECTED])


@pytest.mark.parametrize(("index", "expected"), Batch.params(HEADERS_ACCEPTED))
def test_header_accepted(index: int, expected: dict[str, Any]) -> None:
    assert HEADERS_ACCEPTED_BATCH.errors(index) == []
    assert HEADERS_ACCEPTED_BATCH.row(index) == expected
    assert HEADERS_ACCEPTED_BATCH.lines(index) == [{"__line": 0, "skuId": "A", "quantity": 1.0, "locationId": "S1"}]


@pytest.mark.parametrize(("index", "expected"), Batch.params(HEADERS_REJECTED))
def test_header_rejected(index: int, expected: list[tuple[Any, ...]]) -> None:
    assert HEADERS_REJECTED_BATCH.errors(index) == expected
    assert HEADERS_REJECTED_BATCH.row(index) is None
    assert HEADERS_REJECTED_BATCH.lines(index) == []


@pytest.mark.parametrize(("index", "expected"), Batch.params(LINES_ACCEPTED))
def test_line_accepted(index: int, expected: dict[str, Any]) -> None:
    assert LINES_ACCEPTED_BATCH.errors(index) == []
    assert LINES_ACCEPTED_BATCH.row(index) == {"externalOrderId": "O-1"}
    assert LINES_ACCEPTED_BATCH.lines(index) == [expected]


@pytest.mark.parametrize(("index", "expected"), Batch.params(LINES_REJECTED))
def test_line_rejected_rejects_the_order(index: int, expected: list[tuple[Any, ...]]) -> None:
    assert LINES_REJECTED_BATCH.errors(index) == expected
    assert LINES_REJECTED_BATCH.row(index) is None
    assert LINES_REJECTED_BATCH.lines(index) == []


def test_the_end_to_end_example() -> None:
    order = {
        "externalOrderId": "O-1",
        "lines": [
            {"skuId": "A", "quantity": 1, "locationId": "S1"},
            {"skuId": "B", "quantity": 2.5, "locationId": "S2"},
        ],
    }
    validated = validate_elements(
        "orders", [order, {"externalOrderId": "O-2", "lines": []}, {"externalOrderId": "O-3"}]
    )
    assert issues(validated.errors) == [(1, "lines", "empty_lines", None), (2, "lines", "required", None)]
    assert validated.errors.get_column("message").to_list() == ["lines must not be empty", "lines is required"]
    assert validated.rows.rows() == [(0, "O-1")]
    assert validated.lines is not None
    assert validated.lines.rows() == [(0, 0, "A", 1.0, "S1"), (0, 1, "B", 2.5, "S2")]


def test_a_bad_line_in_the_middle_rejects_every_line_of_its_order() -> None:
    orders = [
        _order("O-1", lines=[LINE, {**LINE, "quantity": 0}, {**LINE, "skuId": "B"}]),
        _order("O-2", lines=[LINE, 7]),
        _order("O-3", lines=[{**LINE, "skuId": "C"}, {**LINE, "skuId": "D"}]),
    ]
    validated = validate_elements("orders", orders)
    assert issues(validated.errors) == [
        (0, "lines[1].quantity", "invalid_value", "0"),
        (1, "lines[1]", "invalid_type", "7"),
    ]
    assert validated.rows.rows() == [(2, "O-3")]
    assert validated.lines is not None
    assert validated.lines.rows() == [(2, 0, "C", 1.0, "S1"), (2, 1, "D", 1.0, "S1")]
