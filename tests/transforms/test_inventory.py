"""Inventory rows -> inventory_levels: quantity defaults, available stock, locations, stubs, last-wins."""

from __future__ import annotations

from typing import Any

import pytest

from tests.frames import Batch, Case, issues, prepare_elements, records

LEVEL = ["sku_id", "location_id", "quantity_on_hand", "quantity_reserved", "min_quantity", "quantity_available"]

LEVELS: list[Case] = [
    ("all-defaults", {"skuId": "S", "locationId": "L"}, ("S", "acme-L", 0.0, 0.0, 0.0, 0.0)),
    ("null-defaults", {"skuId": "S", "locationId": "L", "quantityOnHand": None}, ("S", "acme-L", 0.0, 0.0, 0.0, 0.0)),
    (
        "all-given",
        {"skuId": "S1", "locationId": "WH1", "quantityOnHand": 10, "quantityReserved": "3", "reorderPoint": 2},
        ("S1", "acme-WH1", 10.0, 3.0, 2.0, 7.0),
    ),
    (
        "numeric-string",
        {"skuId": "S", "locationId": "L", "quantityOnHand": " 12.5 "},
        ("S", "acme-L", 12.5, 0.0, 0.0, 12.5),
    ),
    ("reserved-only", {"skuId": "S", "locationId": "L", "quantityReserved": 4}, ("S", "acme-L", 0.0, 4.0, 0.0, -4.0)),
    (
        "reorder-point-is-min-quantity",
        {"skuId": "S", "locationId": "L", "reorderPoint": "5"},
        ("S", "acme-L", 0.0, 0.0, 5.0, 0.0),
    ),
    ("trimmed-ids", {"skuId": " S ", "locationId": "  WH 1 "}, ("S", "acme-WH 1", 0.0, 0.0, 0.0, 0.0)),
    ("numeric-ids", {"skuId": 12, "locationId": 3}, ("12", "acme-3", 0.0, 0.0, 0.0, 0.0)),
]

DUPLICATES: list[Case] = [
    (
        "last-wins",
        [
            {"skuId": "S", "locationId": "L", "quantityOnHand": 1},
            {"skuId": "S", "locationId": "L2", "quantityOnHand": 2},
            {"skuId": "S", "locationId": "L", "quantityOnHand": 3},
        ],
        [("S", "acme-L2", 2.0), ("S", "acme-L", 3.0)],
        [(0, "skuId, locationId", "duplicate_key", "S, L")],
    ),
    (
        "winner-takes-its-own-defaults",
        [{"skuId": "S", "locationId": "L", "quantityOnHand": 9}, {"skuId": "S", "locationId": "L"}],
        [("S", "acme-L", 0.0)],
        [(0, "skuId, locationId", "duplicate_key", "S, L")],
    ),
    (
        "same-after-trimming",
        [{"skuId": " S", "locationId": "L "}, {"skuId": "S", "locationId": "L", "quantityOnHand": 5}],
        [("S", "acme-L", 5.0)],
        [(0, "skuId, locationId", "duplicate_key", "S, L")],
    ),
    (
        "invalid-rows-take-no-part",
        [
            {"skuId": "S", "locationId": "L", "quantityOnHand": 1},
            {"skuId": "S", "locationId": "L", "quantityOnHand": "abc"},
            {"skuId": "S", "locationId": "L", "quantityReserved": -2},
        ],
        [("S", "acme-L", 1.0)],
        [],
    ),
    (
        "swapped-key-is-another-key",
        [{"skuId": "S", "locationId": "L"}, {"skuId": "L", "locationId": "S"}],
        [("S", "acme-L", 0.0), ("L", "acme-S", 0.0)],
        [],
    ),
]

ORGANIZATIONS = [("acme", "acme-WH1"), ("org-2", "org-2-WH1"), ("Org Ü", "Org Ü-WH1")]

LEVELS_BATCH = Batch("inventory", LEVELS)
DUPLICATES_BATCH = Batch("inventory", DUPLICATES, arrays=True)
ONE_LEVEL = Batch("inventory", [("one", {"skuId": "S", "locationId": "WH1"})])


@pytest.mark.parametrize(("index", "level"), Batch.params(LEVELS))
def test_levels(index: int, level: tuple[Any, ...]) -> None:
    prepared = LEVELS_BATCH.prepared(index)
    assert prepared.rows.columns == LEVEL
    assert prepared.rows.rows() == [level]
    assert prepared.lines is None and prepared.warnings.is_empty()


@pytest.mark.parametrize(("organization", "location"), ORGANIZATIONS, ids=["acme", "dashed", "unicode"])
def test_location_is_normalized_per_organization(organization: str, location: str) -> None:
    prepared = ONE_LEVEL.prepared(0, organization)
    assert prepared.rows.get_column("location_id").to_list() == [location]
    assert prepared.references["locations"].rows() == [(location, "WH1")]


def test_stub_references() -> None:
    prepared = prepare_elements(
        "inventory",
        [
            {"skuId": "S2", "locationId": "WH1"},
            {"skuId": "S1", "locationId": " WH2"},
            {"skuId": "S1", "locationId": "WH1"},
            {"skuId": "BAD", "locationId": "WH9", "quantityOnHand": -1},
        ],
    )
    assert sorted(prepared.references) == ["locations", "products"]
    assert records(prepared.references["products"], "external_id") == [{"external_id": "S1"}, {"external_id": "S2"}]
    assert records(prepared.references["locations"], "location_id") == [
        {"location_id": "acme-WH1", "code": "WH1"},
        {"location_id": "acme-WH2", "code": "WH2"},
    ]


@pytest.mark.parametrize(("index", "levels", "warnings"), Batch.params(DUPLICATES))
def test_duplicates(index: int, levels: list[tuple[Any, ...]], warnings: list[tuple[Any, ...]]) -> None:
    prepared = DUPLICATES_BATCH.prepared(index)
    assert prepared.rows.select("sku_id", "location_id", "quantity_on_hand").rows() == levels
    assert issues(prepared.warnings) == warnings


def test_warning_message_names_the_superseding_row() -> None:
    prepared = prepare_elements(
        "inventory",
        [{"skuId": "S", "locationId": "L"}, {"skuId": "X", "locationId": "L"}, {"skuId": "S", "locationId": "L"}],
    )
    assert prepared.warnings.get_column("message").to_list() == ["duplicate skuId, locationId: superseded by row 2"]
