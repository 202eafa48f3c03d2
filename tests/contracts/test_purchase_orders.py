"""Purchase-order contract: header identifiers, an optional status, and non-empty valid lines."""

from __future__ import annotations

from typing import Any

import pytest

from tests.frames import Batch, Case, Raw, issues, validate_elements

LINE = {"skuId": "A", "quantity": 5, "unitCost": 1.25}


def _po(number: Any = "PO-1", **fields: Any) -> dict[str, Any]:
    header = {"externalPoNumber": number, "supplierId": "SUP", "destinationLocationId": "DC", "lines": [LINE]}
    return {**header, **fields}


def _header(number: str = "PO-1", supplier: str = "SUP", location: str = "DC", status: str | None = None) -> Any:
    return {"externalPoNumber": number, "supplierId": supplier, "destinationLocationId": location, "status": status}


HEADERS_ACCEPTED: list[Case] = [
    ("status-missing", _po(), _header()),
    ("status-null", _po(status=None), _header()),
    ("status-empty-is-missing", _po(status=""), _header()),
    ("status-lower-case", _po(status="confirmed"), _header(status="CONFIRMED")),
    ("status-padded-mixed-case", _po(status="  Partially_Received "), _header(status="PARTIALLY_RECEIVED")),
    *[
        (f"status-{s.lower()}", _po(status=s), _header(status=s))
        for s in ("PENDING", "SUBMITTED", "RECEIVED", "CANCELLED", "CLOSED")
    ],
    ("ids-trimmed", _po(" PO-1 ", supplierId="\tSUP ", destinationLocationId=" DC\n"), _header()),
    ("ids-numbers", _po(1001, supplierId=7, destinationLocationId=3), _header("1001", "7", "3")),
    ("ids-255", _po("p" * 255, supplierId="s" * 255), _header("p" * 255, "s" * 255)),
    ("ids-unicode", _po("Bon-é", destinationLocationId="Entrepôt"), _header("Bon-é", location="Entrepôt")),
]

HEADERS_REJECTED: list[Case] = [
    ("number-null", _po(None), [("externalPoNumber", "required", None)]),
    (
        "number-missing",
        {"supplierId": "SUP", "destinationLocationId": "DC", "lines": [LINE]},
        [("externalPoNumber", "required", None)],
    ),
    ("number-blank", _po("  "), [("externalPoNumber", "required", "  ")]),
    ("number-256", _po("p" * 256), [("externalPoNumber", "too_long", "p" * 200)]),
    ("number-object", _po({"n": 1}), [("externalPoNumber", "invalid_type", '{"n":1}')]),
    ("supplier-null", _po(supplierId=None), [("supplierId", "required", None)]),
    ("supplier-empty", _po(supplierId=""), [("supplierId", "required", "")]),
    ("supplier-256", _po(supplierId="s" * 256), [("supplierId", "too_long", "s" * 200)]),
    ("supplier-boolean", _po(supplierId=True), [("supplierId", "invalid_type", "true")]),
    ("location-null", _po(destinationLocationId=None), [("destinationLocationId", "required", None)]),
    ("location-array", _po(destinationLocationId=["DC"]), [("destinationLocationId", "invalid_type", '["DC"]')]),
    ("location-256", _po(destinationLocationId="d" * 256), [("destinationLocationId", "too_long", "d" * 200)]),
    ("status-unknown", _po(status="shipped"), [("status", "invalid_value", "shipped")]),
    ("status-spaces-inside", _po(status="partially received"), [("status", "invalid_value", "partially received")]),
    ("status-number", _po(status=1), [("status", "invalid_type", "1")]),
    ("status-boolean", _po(status=True), [("status", "invalid_type", "true")]),
    ("status-object", _po(status={"s": "PENDING"}), [("status", "invalid_type", '{"s":"PENDING"}')]),
    (
        "lines-missing",
        {"externalPoNumber": "P", "supplierId": "S", "destinationLocationId": "D"},
        [("lines", "required", None)],
    ),
    ("lines-null", _po(lines=None), [("lines", "required", None)]),
    ("lines-empty", _po(lines=[]), [("lines", "empty_lines", None)]),
    ("lines-object", _po(lines=LINE), [("lines", "invalid_type", '{"skuId":"A","quantity":5,"unitCost":1.25}')]),
    ("lines-string", _po(lines="A,B"), [("lines", "invalid_type", "A,B")]),
    (
        "every-problem-in-field-order",
        {"lines": [], "status": "nope", "destinationLocationId": "", "supplierId": [1]},
        [
            ("externalPoNumber", "required", None),
            ("supplierId", "invalid_type", "[1]"),
            ("destinationLocationId", "required", ""),
            ("status", "invalid_value", "nope"),
            ("lines", "empty_lines", None),
        ],
    ),
    ("not-an-object", "PO-1", [(None, "invalid_type", '"PO-1"')]),
]

LINES_ACCEPTED: list[Case] = [
    ("numbers", LINE, {"__line": 0, "skuId": "A", "quantity": 5.0, "unitCost": 1.25}),
    (
        "numeric-strings",
        {"skuId": " B ", "quantity": "2", "unitCost": " 0.5 "},
        {"__line": 0, "skuId": "B", "quantity": 2.0, "unitCost": 0.5},
    ),
    (
        "unit-cost-zero",
        {"skuId": "A", "quantity": 1, "unitCost": "0"},
        {"__line": 0, "skuId": "A", "quantity": 1.0, "unitCost": 0.0},
    ),
    (
        "fractional-quantity",
        {"skuId": "A", "quantity": 0.25, "unitCost": 1},
        {"__line": 0, "skuId": "A", "quantity": 0.25, "unitCost": 1.0},
    ),
    (
        "sku-number",
        {"skuId": 42, "quantity": 1, "unitCost": 1},
        {"__line": 0, "skuId": "42", "quantity": 1.0, "unitCost": 1.0},
    ),
    (
        "unit-cost-largest",
        {"skuId": "A", "quantity": 1, "unitCost": 99999999999999},
        {"__line": 0, "skuId": "A", "quantity": 1.0, "unitCost": 99999999999999.0},
    ),
]

LINES_REJECTED: list[Case] = [
    ("sku-missing", {"quantity": 1, "unitCost": 1}, [("lines[0].skuId", "required", None)]),
    ("sku-blank", {"skuId": " ", "quantity": 1, "unitCost": 1}, [("lines[0].skuId", "required", " ")]),
    ("sku-256", {"skuId": "k" * 256, "quantity": 1, "unitCost": 1}, [("lines[0].skuId", "too_long", "k" * 200)]),
    ("sku-object", {"skuId": {}, "quantity": 1, "unitCost": 1}, [("lines[0].skuId", "invalid_type", "{}")]),
    ("quantity-missing", {"skuId": "A", "unitCost": 1}, [("lines[0].quantity", "required", None)]),
    ("quantity-zero", {"skuId": "A", "quantity": 0, "unitCost": 1}, [("lines[0].quantity", "invalid_value", "0")]),
    (
        "quantity-negative",
        {"skuId": "A", "quantity": "-2", "unitCost": 1},
        [("lines[0].quantity", "invalid_value", "-2")],
    ),
    ("quantity-text", {"skuId": "A", "quantity": "two", "unitCost": 1}, [("lines[0].quantity", "invalid_type", "two")]),
    (
        "quantity-boolean",
        {"skuId": "A", "quantity": True, "unitCost": 1},
        [("lines[0].quantity", "invalid_type", "true")],
    ),
    (
        "quantity-overflow",
        {"skuId": "A", "quantity": Raw("1e400"), "unitCost": 1},
        [("lines[0].quantity", "invalid_value", "1e400")],
    ),
    ("unit-cost-missing", {"skuId": "A", "quantity": 1}, [("lines[0].unitCost", "required", None)]),
    (
        "unit-cost-negative",
        {"skuId": "A", "quantity": 1, "unitCost": -0.01},
        [("lines[0].unitCost", "invalid_value", "-0.01")],
    ),
    (
        "unit-cost-too-large",
        {"skuId": "A", "quantity": 1, "unitCost": 1e15},
        [("lines[0].unitCost", "invalid_value", "1000000000000000.0")],
    ),
    (
        "unit-cost-nan",
        {"skuId": "A", "quantity": 1, "unitCost": "NaN"},
        [("lines[0].unitCost", "invalid_value", "NaN")],
    ),
    ("unit-cost-array", {"skuId": "A", "quantity": 1, "unitCost": [1]}, [("lines[0].unitCost", "invalid_type", "[1]")]),
    (
        "every-problem-in-field-order",
        {"unitCost": "free", "quantity": 0},
        [
            ("lines[0].skuId", "required", None),
            ("lines[0].quantity", "invalid_value", "0"),
            ("lines[0].unitCost", "invalid_type", "free"),
        ],
    ),
    ("line-string", "A x 5", [("lines[0]", "invalid_type", '"A x 5"')]),
    ("line-number", 5, [("lines[0]", "invalid_type", "5")]),
    ("line-null", None, [("lines[0]", "invalid_type", None)]),
    ("line-array", ["A", 5, 1.25], [("lines[0]", "invalid_type", '["A",5,1.25]')]),
]

HEADERS_ACCEPTED_BATCH = Batch("purchase-orders", HEADERS_ACCEPTED)
HEADERS_REJECTED_BATCH = Batch("purchase-orders", HEADERS_REJECTED)
LINES_ACCEPTED_BATCH = Batch("purchase-orders", [(name, _po(lines=[line]), None) for name, line, _ in LINES_ACCEPTED])
LINES_REJECTED_BATCH = Batch("purchase-orders", [(name, _po(lines=[line]), None) for name, line, _ in LINES_REJECTED])


@pytest.mark.parametrize(("index", "expected"), Batch.params(HEADERS_ACCEPTED))
def test_header_accepted(index: int, expected: dict[str, Any]) -> None:
    assert HEADERS_ACCEPTED_BATCH.errors(index) == []
    assert HEADERS_ACCEPTED_BATCH.row(index) == expected
    assert HEADERS_ACCEPTED_BATCH.lines(index) == [{"__line": 0, "skuId": "A", "quantity": 5.0, "unitCost": 1.25}]


@pytest.mark.parametrize(("index", "expected"), Batch.params(HEADERS_REJECTED))
def test_header_rejected(index: int, expected: list[tuple[Any, ...]]) -> None:
    assert HEADERS_REJECTED_BATCH.errors(index) == expected
    assert HEADERS_REJECTED_BATCH.row(index) is None
    assert HEADERS_REJECTED_BATCH.lines(index) == []


@pytest.mark.parametrize(("index", "expected"), Batch.params(LINES_ACCEPTED))
def test_line_accepted(index: int, expected: dict[str, Any]) -> None:
    assert LINES_ACCEPTED_BATCH.errors(index) == []
    assert LINES_ACCEPTED_BATCH.row(index) == _header()
    assert LINES_ACCEPTED_BATCH.lines(index) == [expected]


@pytest.mark.parametrize(("index", "expected"), Batch.params(LINES_REJECTED))
def test_line_rejected_rejects_the_order(index: int, expected: list[tuple[Any, ...]]) -> None:
    assert LINES_REJECTED_BATCH.errors(index) == expected
    assert LINES_REJECTED_BATCH.row(index) is None
    assert LINES_REJECTED_BATCH.lines(index) == []


def test_status_message_lists_the_statuses() -> None:
    validated = validate_elements("purchase-orders", [_po(status="shipped")])
    assert validated.errors.get_column("message").to_list() == [
        "status must be one of PENDING, SUBMITTED, CONFIRMED, PARTIALLY_RECEIVED, RECEIVED, CANCELLED, CLOSED"
    ]


def test_line_messages() -> None:
    validated = validate_elements(
        "purchase-orders",
        [
            _po(
                lines=[
                    LINE,
                    {"skuId": "", "quantity": 0, "unitCost": 1e15},
                    "x",
                    {"skuId": "A", "quantity": "q", "unitCost": "inf"},
                ]
            )
        ],
    )
    assert validated.errors.get_column("message").to_list() == [
        "lines[1].skuId is required",
        "lines[1].quantity must be > 0",
        "lines[1].unitCost must be <= 99999999999999.0",
        "lines[2] must be a JSON object",
        "lines[3].quantity must be a number",
        "lines[3].unitCost must be a finite number",
    ]


def test_one_bad_line_rejects_the_whole_order_and_only_it() -> None:
    good = _po("PO-1", lines=[LINE, {"skuId": "B", "quantity": "2", "unitCost": "0"}])
    bad = _po("PO-BAD", lines=[LINE, {"skuId": "B", "quantity": 0, "unitCost": -1}, LINE])
    validated = validate_elements("purchase-orders", [good, bad, _po("PO-3")])
    assert issues(validated.errors) == [
        (1, "lines[1].quantity", "invalid_value", "0"),
        (1, "lines[1].unitCost", "invalid_value", "-1"),
    ]
    assert validated.rows.get_column("externalPoNumber").to_list() == ["PO-1", "PO-3"]
    assert validated.lines is not None
    assert validated.lines.rows() == [(0, 0, "A", 5.0, 1.25), (0, 1, "B", 2.0, 0.0), (2, 0, "A", 5.0, 1.25)]


def test_header_and_line_problems_are_all_reported_in_order() -> None:
    element = _po(
        "",
        status=7,
        lines=[
            {"skuId": "A", "quantity": -1, "unitCost": 1},
            LINE,
            None,
            {"skuId": True, "quantity": 1, "unitCost": "1e400"},
        ],
    )
    validated = validate_elements("purchase-orders", [element])
    assert issues(validated.errors) == [
        (0, "externalPoNumber", "required", ""),
        (0, "status", "invalid_type", "7"),
        (0, "lines[0].quantity", "invalid_value", "-1"),
        (0, "lines[2]", "invalid_type", None),
        (0, "lines[3].skuId", "invalid_type", "true"),
        (0, "lines[3].unitCost", "invalid_value", "1e400"),
    ]
    assert validated.rows.is_empty()
