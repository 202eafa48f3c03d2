"""Supplier rows -> suppliers, last-wins on externalId."""

from __future__ import annotations

from typing import Any

import pytest

from tests.frames import Batch, Case, issues, prepare_elements

SUPPLIERS: list[Case] = [
    ("plain", [{"externalId": "SUP-1"}, {"externalId": "SUP-2"}], ["SUP-1", "SUP-2"], []),
    ("trimmed-and-numeric", [{"externalId": "  SUP-1\t"}, {"externalId": 7}], ["SUP-1", "7"], []),
    (
        "last-wins",
        [{"externalId": "A"}, {"externalId": "B"}, {"externalId": " A "}],
        ["B", "A"],
        [(0, "externalId", "duplicate_key", "A")],
    ),
    (
        "invalid-rows-take-no-part",
        [{"externalId": "A"}, {"externalId": "A" * 256}, {"externalId": {"id": "A"}}],
        ["A"],
        [],
    ),
    ("empty", [], [], []),
]

BATCH = Batch("suppliers", SUPPLIERS, arrays=True)


@pytest.mark.parametrize(("index", "suppliers", "warnings"), Batch.params(SUPPLIERS))
def test_suppliers(index: int, suppliers: list[str], warnings: list[tuple[Any, ...]]) -> None:
    prepared = BATCH.prepared(index)
    assert prepared.rows.columns == ["external_id"]
    assert prepared.rows.get_column("external_id").to_list() == suppliers
    assert issues(prepared.warnings) == warnings
    assert prepared.lines is None and prepared.references == {}


def test_warning_message() -> None:
    prepared = prepare_elements("suppliers", [{"externalId": "A"}, {"externalId": "A"}, {"externalId": "A"}])
    assert prepared.warnings.select("row", "message").rows() == [
        (0, "duplicate externalId: superseded by row 2"),
        (1, "duplicate externalId: superseded by row 2"),
    ]
