"""Customer orders -> orders + order_lines numbered 1..n with normalized locations, stubs, last-wins."""

from __future__ import annotations

from typing import Any

import pytest

from tests.frames import Batch, Case, issues, prepare_elements, records


def _line(sku: str = "A", quantity: Any = 1, location: str = "S1") -> dict[str, Any]:
    return {"skuId": sku, "quantity": quantity, "locationId": location}


def _order(number: str, *lines: Any) -> dict[str, Any]:
    return {"externalOrderId": number, "lines": list(lines)}


LINES: list[Case] = [
    ("one-line", _order("O-1", _line()), [("O-1", 1, "A", 1.0, "acme-S1")]),
    (
        "end-to-end-example",
        _order("O-1", _line("A", 1, "S1"), _line("B", 2.5, "S2")),
        [("O-1", 1, "A", 1.0, "acme-S1"), ("O-1", 2, "B", 2.5, "acme-S2")],
    ),
    (
        "trimmed-and-repeated-skus",
        _order(" O-1 ", _line(" B ", "3", " S2 "), _line("A", 1, "S1"), _line("B", 1, "S2")),
        [("O-1", 1, "B", 3.0, "acme-S2"), ("O-1", 2, "A", 1.0, "acme-S1"), ("O-1", 3, "B", 1.0, "acme-S2")],
    ),
]

DUPLICATES: list[Case] = [
    (
        "last-wins-with-its-lines",
        [_order("O-1", _line("A"), _line("B")), _order("O-2", _line("C")), _order("O-1", _line("D"))],
        ["O-2", "O-1"],
        [("O-1", 1, "D"), ("O-2", 1, "C")],
        [(0, "externalOrderId", "duplicate_key", "O-1")],
    ),
    (
        "same-after-trimming",
        [_order("O-1", _line("A")), _order(" O-1", _line("B")), _order("O-1 ", _line("C"), _line("D"))],
        ["O-1"],
        [("O-1", 1, "C"), ("O-1", 2, "D")],
        [(0, "externalOrderId", "duplicate_key", "O-1"), (1, "externalOrderId", "duplicate_key", "O-1")],
    ),
    (
        "invalid-orders-take-no-part",
        [_order("O-1", _line("A")), _order("O-1", _line("B", -1)), {"externalOrderId": "O-1"}],
        ["O-1"],
        [("O-1", 1, "A")],
        [],
    ),
    (
        "several-orders-numbered-per-order",
        [_order("O-1", _line("A"), _line("B")), _order("O-BAD", _line("A"), 5), _order("O-3", _line("C"))],
        ["O-1", "O-3"],
        [("O-1", 1, "A"), ("O-1", 2, "B"), ("O-3", 1, "C")],
        [],
    ),
]

LINES_BATCH = Batch("orders", LINES)
DUPLICATES_BATCH = Batch("orders", DUPLICATES, arrays=True)


@pytest.mark.parametrize(("index", "lines"), Batch.params(LINES))
def test_lines(index: int, lines: list[tuple[Any, ...]]) -> None:
    prepared = LINES_BATCH.prepared(index)
    assert prepared.rows.columns == ["external_order_id"]
    assert prepared.rows.rows() == [("O-1",)]
    assert prepared.lines is not None
    assert prepared.lines.columns == ["external_order_id", "line_number", "sku_id", "quantity", "location_id"]
    assert prepared.lines.sort("line_number").rows() == lines
    assert prepared.warnings.is_empty()


@pytest.mark.parametrize(
    ("organization", "location"),
    [("acme", "acme-S1"), ("org-7", "org-7-S1")],
    ids=["acme", "dashed"],
)
def test_line_location_is_normalized_per_organization(organization: str, location: str) -> None:
    prepared = LINES_BATCH.prepared(0, organization)
    assert prepared.lines is not None
    assert prepared.lines.get_column("location_id").to_list() == [location]
    assert prepared.references["locations"].rows() == [(location, "S1")]


def test_stub_references_come_from_lines_of_accepted_orders() -> None:
    prepared = prepare_elements(
        "orders",
        [
            _order("O-1", _line("A", 1, "S1"), _line("B", 1, "S2")),
            _order("O-2", _line("A", 1, "S2"), _line("C", 1, " S3")),
            _order("O-BAD", _line("Z", 1, "S9"), _line("A", 0, "S1")),
        ],
    )
    assert sorted(prepared.references) == ["locations", "products"]
    assert records(prepared.references["products"], "external_id") == [
        {"external_id": "A"},
        {"external_id": "B"},
        {"external_id": "C"},
    ]
    assert records(prepared.references["locations"], "location_id") == [
        {"location_id": "acme-S1", "code": "S1"},
        {"location_id": "acme-S2", "code": "S2"},
        {"location_id": "acme-S3", "code": "S3"},
    ]


@pytest.mark.parametrize(("index", "orders", "lines", "warnings"), Batch.params(DUPLICATES))
def test_duplicates(
    index: int, orders: list[str], lines: list[tuple[Any, ...]], warnings: list[tuple[Any, ...]]
) -> None:
    prepared = DUPLICATES_BATCH.prepared(index)
    assert prepared.rows.get_column("external_order_id").to_list() == orders
    assert prepared.lines is not None
    assert (
        prepared.lines.sort("external_order_id", "line_number")
        .select("external_order_id", "line_number", "sku_id")
        .rows()
        == lines
    )
    assert issues(prepared.warnings) == warnings


def test_warning_message_names_the_superseding_row() -> None:
    prepared = prepare_elements("orders", [_order("O-1", _line()), _order("O-2", _line()), _order("O-1", _line())])
    assert prepared.warnings.get_column("message").to_list() == ["duplicate externalOrderId: superseded by row 2"]
