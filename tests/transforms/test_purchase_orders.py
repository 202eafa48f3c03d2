"""Purchase orders -> headers (status default, normalized destination) + lines numbered 1..n, stubs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.frames import Batch, Case, issues, prepare_elements, records

A = {"skuId": "A", "quantity": 5, "unitCost": 1.25}
B = {"skuId": "B", "quantity": "2", "unitCost": "0"}


def _po(number: str = "PO-1", lines: list[Any] | None = None, **fields: Any) -> dict[str, Any]:
    header = {"externalPoNumber": number, "supplierId": "SUP-9", "destinationLocationId": "DC"}
    return {**header, "lines": [A, B] if lines is None else lines, **fields}


HEADERS: list[Case] = [
    ("status-defaults", _po(), ("PO-1", "SUP-9", "acme-DC", "PENDING")),
    ("status-null-defaults", _po(status=None), ("PO-1", "SUP-9", "acme-DC", "PENDING")),
    ("status-empty-defaults", _po(status=""), ("PO-1", "SUP-9", "acme-DC", "PENDING")),
    ("status-upper-cased", _po(status="confirmed"), ("PO-1", "SUP-9", "acme-DC", "CONFIRMED")),
    ("status-trimmed", _po(status=" partially_received "), ("PO-1", "SUP-9", "acme-DC", "PARTIALLY_RECEIVED")),
    ("status-given", _po(status="CLOSED"), ("PO-1", "SUP-9", "acme-DC", "CLOSED")),
    (
        "ids-trimmed",
        _po(" PO-1 ", supplierId=" SUP-9", destinationLocationId="DC "),
        ("PO-1", "SUP-9", "acme-DC", "PENDING"),
    ),
    ("unicode-location", _po(destinationLocationId="Dépôt 2"), ("PO-1", "SUP-9", "acme-Dépôt 2", "PENDING")),
]

LINES: list[Case] = [
    ("one-line", _po(lines=[A]), [("PO-1", 1, "A", 5.0, 1.25)]),
    ("two-lines", _po(lines=[A, B]), [("PO-1", 1, "A", 5.0, 1.25), ("PO-1", 2, "B", 2.0, 0.0)]),
    (
        "same-sku-twice-kept-as-lines",
        _po(lines=[B, A, {"skuId": " A ", "quantity": 0.5, "unitCost": "99999999999999"}]),
        [("PO-1", 1, "B", 2.0, 0.0), ("PO-1", 2, "A", 5.0, 1.25), ("PO-1", 3, "A", 0.5, 99999999999999.0)],
    ),
]

DUPLICATES: list[Case] = [
    (
        "last-wins-with-its-lines",
        [_po("PO-1", [A, B], status="SUBMITTED"), _po("PO-2", [A]), _po("PO-1", [B], supplierId="SUP-2")],
        [("PO-2", "SUP-9", "PENDING"), ("PO-1", "SUP-2", "PENDING")],
        [("PO-1", 1, "B"), ("PO-2", 1, "A")],
        [(0, "externalPoNumber", "duplicate_key", "PO-1")],
    ),
    (
        "three-times",
        [_po("PO-1", [A]), _po("PO-1", [B]), _po("PO-1", [A, B], status="received")],
        [("PO-1", "SUP-9", "RECEIVED")],
        [("PO-1", 1, "A"), ("PO-1", 2, "B")],
        [(0, "externalPoNumber", "duplicate_key", "PO-1"), (1, "externalPoNumber", "duplicate_key", "PO-1")],
    ),
    (
        "invalid-orders-take-no-part",
        [_po("PO-1", [A], status="confirmed"), _po("PO-1", [{**A, "unitCost": -1}]), _po("PO-1", [])],
        [("PO-1", "SUP-9", "CONFIRMED")],
        [("PO-1", 1, "A")],
        [],
    ),
    (
        "several-orders-numbered-per-order",
        [_po("PO-1", [A, B]), _po("PO-BAD", [A, {**B, "quantity": 0}]), _po("PO-3", [B])],
        [("PO-1", "SUP-9", "PENDING"), ("PO-3", "SUP-9", "PENDING")],
        [("PO-1", 1, "A"), ("PO-1", 2, "B"), ("PO-3", 1, "B")],
        [],
    ),
    ("nothing-valid", [_po(lines=[]), "x"], [], [], []),
]

HEADERS_BATCH = Batch("purchase-orders", HEADERS)
LINES_BATCH = Batch("purchase-orders", LINES)
DUPLICATES_BATCH = Batch("purchase-orders", DUPLICATES, arrays=True)


@pytest.mark.parametrize(("index", "header"), Batch.params(HEADERS))
def test_headers(index: int, header: tuple[str, ...]) -> None:
    prepared = HEADERS_BATCH.prepared(index)
    assert prepared.rows.columns == ["external_po_number", "supplier_id", "destination_location_id", "status"]
    assert prepared.rows.rows() == [header]
    assert prepared.warnings.is_empty()


@pytest.mark.parametrize(("index", "lines"), Batch.params(LINES))
def test_lines_are_numbered_from_one_in_sent_order(index: int, lines: list[tuple[Any, ...]]) -> None:
    prepared = LINES_BATCH.prepared(index)
    assert prepared.lines is not None
    assert prepared.lines.columns == ["external_po_number", "line_number", "sku_id", "quantity", "unit_cost"]
    assert prepared.lines.sort("external_po_number", "line_number").rows() == lines


@pytest.mark.parametrize(("index", "headers", "lines", "warnings"), Batch.params(DUPLICATES))
def test_duplicates(
    index: int, headers: list[tuple[Any, ...]], lines: list[tuple[Any, ...]], warnings: list[tuple[Any, ...]]
) -> None:
    prepared = DUPLICATES_BATCH.prepared(index)
    assert prepared.rows.select("external_po_number", "supplier_id", "status").rows() == headers
    assert prepared.lines is not None
    assert (
        prepared.lines.sort("external_po_number", "line_number")
        .select("external_po_number", "line_number", "sku_id")
        .rows()
        == lines
    )
    assert issues(prepared.warnings) == warnings


def test_stub_references() -> None:
    prepared = prepare_elements(
        "purchase-orders",
        [
            _po("PO-1", [A, B], supplierId="SUP-1", destinationLocationId="DC1"),
            _po("PO-2", [{**A, "skuId": "C"}, A], supplierId="SUP-2", destinationLocationId="DC1"),
            _po("PO-3", [A], supplierId="SUP-1", destinationLocationId=" DC2 "),
            _po("PO-BAD", [{**A, "skuId": "Z"}], supplierId="SUP-Z", destinationLocationId="DCZ", status="lost"),
        ],
        "org-1",
    )
    assert sorted(prepared.references) == ["locations", "products", "suppliers"]
    assert records(prepared.references["suppliers"], "external_id") == [
        {"external_id": "SUP-1"},
        {"external_id": "SUP-2"},
    ]
    assert records(prepared.references["products"], "external_id") == [
        {"external_id": "A"},
        {"external_id": "B"},
        {"external_id": "C"},
    ]
    assert records(prepared.references["locations"], "location_id") == [
        {"location_id": "org-1-DC1", "code": "DC1"},
        {"location_id": "org-1-DC2", "code": "DC2"},
    ]


def test_warning_message_names_the_superseding_row() -> None:
    prepared = prepare_elements("purchase-orders", [_po("PO-1"), _po("PO-2"), _po("PO-1")])
    assert prepared.warnings.get_column("message").to_list() == ["duplicate externalPoNumber: superseded by row 2"]
