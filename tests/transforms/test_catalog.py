"""Catalog rows -> products: name defaults to the externalId; duplicates are last-wins."""

from __future__ import annotations

from typing import Any

import pytest

from tests.frames import Batch, Case, issues, prepare_elements

PRODUCTS: list[Case] = [
    ("name-given", {"externalId": "P-1", "name": "Widget"}, ("P-1", "Widget")),
    ("name-defaults", {"externalId": "P-1"}, ("P-1", "P-1")),
    ("name-null-defaults", {"externalId": "P-1", "name": None}, ("P-1", "P-1")),
    ("name-defaults-to-trimmed-id", {"externalId": "  P-1 "}, ("P-1", "P-1")),
    ("numeric-id", {"externalId": 42}, ("42", "42")),
    ("numeric-name", {"externalId": "P-1", "name": 7}, ("P-1", "7")),
    ("unicode", {"externalId": "Café", "name": "Crème"}, ("Café", "Crème")),
]

DUPLICATES: list[Case] = [
    (
        "last-wins",
        [{"externalId": "A", "name": "first"}, {"externalId": "B"}, {"externalId": "A", "name": "last"}],
        [("B", "B"), ("A", "last")],
        [(0, "externalId", "duplicate_key", "A")],
    ),
    (
        "winner-defaults-its-own-name",
        [{"externalId": "A", "name": "first"}, {"externalId": "A"}],
        [("A", "A")],
        [(0, "externalId", "duplicate_key", "A")],
    ),
    (
        "same-after-trimming",
        [{"externalId": " A", "name": "1"}, {"externalId": "A ", "name": "2"}, {"externalId": "A", "name": "3"}],
        [("A", "3")],
        [(0, "externalId", "duplicate_key", "A"), (1, "externalId", "duplicate_key", "A")],
    ),
    (
        "invalid-rows-take-no-part",
        [{"externalId": "A", "name": "kept"}, {"externalId": "A", "name": True}, {"externalId": "A ", "name": []}],
        [("A", "kept")],
        [],
    ),
    ("case-sensitive", [{"externalId": "a"}, {"externalId": "A"}], [("a", "a"), ("A", "A")], []),
    ("empty", [], [], []),
]

PRODUCTS_BATCH = Batch("catalog", PRODUCTS)
DUPLICATES_BATCH = Batch("catalog", DUPLICATES, arrays=True)


@pytest.mark.parametrize(("index", "product"), Batch.params(PRODUCTS))
def test_products(index: int, product: tuple[str, str]) -> None:
    prepared = PRODUCTS_BATCH.prepared(index)
    assert prepared.rows.columns == ["external_id", "name"]
    assert prepared.rows.rows() == [product]
    assert prepared.lines is None and prepared.references == {} and prepared.warnings.is_empty()


@pytest.mark.parametrize(("index", "products", "warnings"), Batch.params(DUPLICATES))
def test_duplicates(index: int, products: list[tuple[str, str]], warnings: list[tuple[Any, ...]]) -> None:
    prepared = DUPLICATES_BATCH.prepared(index)
    assert prepared.rows.rows() == products
    assert issues(prepared.warnings) == warnings


def test_warning_message_names_the_superseding_row() -> None:
    prepared = prepare_elements("catalog", [{"externalId": "A"}, {"externalId": "B"}, {"externalId": "A"}])
    assert prepared.warnings.get_column("message").to_list() == ["duplicate externalId: superseded by row 2"]
