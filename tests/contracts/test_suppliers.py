"""Suppliers contract: externalId only (identifier, required, <= 255)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.frames import Batch, Case, issues, validate_elements

ACCEPTED: list[Case] = [
    ("plain", {"externalId": "SUP-1"}, {"externalId": "SUP-1"}),
    ("trimmed", {"externalId": "\n SUP-1  "}, {"externalId": "SUP-1"}),
    ("number", {"externalId": 9}, {"externalId": "9"}),
    ("decimal", {"externalId": 9.5}, {"externalId": "9.5"}),
    ("unicode", {"externalId": "Fournisseur-é"}, {"externalId": "Fournisseur-é"}),
    ("escaped", {"externalId": "A\\B"}, {"externalId": "A\\B"}),
    ("255", {"externalId": "y" * 255}, {"externalId": "y" * 255}),
    ("255-after-trim", {"externalId": " " + "y" * 255 + " "}, {"externalId": "y" * 255}),
    ("unknown-fields-ignored", {"externalId": "S", "name": {"x": 1}}, {"externalId": "S"}),
]

REJECTED: list[Case] = [
    ("missing", {}, [("externalId", "required", None)]),
    ("null", {"externalId": None}, [("externalId", "required", None)]),
    ("empty", {"externalId": ""}, [("externalId", "required", "")]),
    ("blank", {"externalId": "  "}, [("externalId", "required", "  ")]),
    ("256", {"externalId": "x" * 256}, [("externalId", "too_long", "x" * 200)]),
    ("object", {"externalId": {"id": "S"}}, [("externalId", "invalid_type", '{"id":"S"}')]),
    ("array", {"externalId": []}, [("externalId", "invalid_type", "[]")]),
    ("boolean", {"externalId": True}, [("externalId", "invalid_type", "true")]),
    ("string-element", "SUP-1", [(None, "invalid_type", '"SUP-1"')]),
    ("number-element", 12, [(None, "invalid_type", "12")]),
]

ACCEPTED_BATCH = Batch("suppliers", ACCEPTED)
REJECTED_BATCH = Batch("suppliers", REJECTED)


@pytest.mark.parametrize(("index", "expected"), Batch.params(ACCEPTED))
def test_accepted(index: int, expected: dict[str, Any]) -> None:
    assert ACCEPTED_BATCH.errors(index) == []
    assert ACCEPTED_BATCH.row(index) == expected


@pytest.mark.parametrize(("index", "expected"), Batch.params(REJECTED))
def test_rejected(index: int, expected: list[tuple[Any, ...]]) -> None:
    assert REJECTED_BATCH.errors(index) == expected
    assert REJECTED_BATCH.row(index) is None


def test_the_end_to_end_too_long_example() -> None:
    validated = validate_elements("suppliers", [{"externalId": "x" * 256}, {"externalId": "y" * 255}])
    assert issues(validated.errors) == [(0, "externalId", "too_long", "x" * 200)]
    assert validated.errors.get_column("message").to_list() == ["externalId must be at most 255 characters"]
    assert validated.rows.rows() == [(1, "y" * 255)]
