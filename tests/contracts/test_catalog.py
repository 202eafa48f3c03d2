"""Catalog contract: externalId (identifier, required, <= 255) and an optional name."""

from __future__ import annotations

from typing import Any

import pytest

from tests.frames import Batch, Case, issues, validate_elements

ACCEPTED: list[Case] = [
    ("id-and-name", {"externalId": "P-1", "name": "Widget"}, {"externalId": "P-1", "name": "Widget"}),
    ("name-missing", {"externalId": "P-1"}, {"externalId": "P-1", "name": None}),
    ("name-null", {"externalId": "P-1", "name": None}, {"externalId": "P-1", "name": None}),
    ("id-trimmed", {"externalId": "  P-1 \t"}, {"externalId": "P-1", "name": None}),
    ("id-number", {"externalId": 42}, {"externalId": "42", "name": None}),
    ("name-number", {"externalId": "P", "name": 12}, {"externalId": "P", "name": "12"}),
    ("name-kept-as-sent", {"externalId": "P", "name": "  Big  box "}, {"externalId": "P", "name": "  Big  box "}),
    ("unicode", {"externalId": "Café", "name": "Crème brûlée"}, {"externalId": "Café", "name": "Crème brûlée"}),
    ("escapes", {"externalId": 'P"1', "name": "a\\b\nc"}, {"externalId": 'P"1', "name": "a\\b\nc"}),
    ("id-255", {"externalId": "x" * 255}, {"externalId": "x" * 255, "name": None}),
    ("id-255-multibyte", {"externalId": "é" * 255}, {"externalId": "é" * 255, "name": None}),
    ("id-255-after-trim", {"externalId": "  " + "x" * 255 + "  "}, {"externalId": "x" * 255, "name": None}),
    ("name-long", {"externalId": "P", "name": "n" * 1000}, {"externalId": "P", "name": "n" * 1000}),
    ("unknown-fields-ignored", {"externalId": "P", "color": "red"}, {"externalId": "P", "name": None}),
]

REJECTED: list[Case] = [
    ("id-missing", {"name": "Widget"}, [("externalId", "required", None)]),
    ("id-null", {"externalId": None}, [("externalId", "required", None)]),
    ("id-empty", {"externalId": ""}, [("externalId", "required", "")]),
    ("id-blank", {"externalId": " \t "}, [("externalId", "required", " \t ")]),
    ("id-256", {"externalId": "x" * 256}, [("externalId", "too_long", "x" * 200)]),
    ("id-256-multibyte", {"externalId": "é" * 256}, [("externalId", "too_long", "é" * 200)]),
    ("id-object", {"externalId": {"a": 1}}, [("externalId", "invalid_type", '{"a":1}')]),
    ("id-array", {"externalId": ["P"]}, [("externalId", "invalid_type", '["P"]')]),
    ("id-boolean", {"externalId": True}, [("externalId", "invalid_type", "true")]),
    ("name-boolean", {"externalId": "P", "name": False}, [("name", "invalid_type", "false")]),
    ("name-object", {"externalId": "P", "name": {"en": "x"}}, [("name", "invalid_type", '{"en":"x"}')]),
    ("name-array", {"externalId": "P", "name": ["x"]}, [("name", "invalid_type", '["x"]')]),
    (
        "every-problem-in-field-order",
        {"name": [1], "externalId": True},
        [("externalId", "invalid_type", "true"), ("name", "invalid_type", "[1]")],
    ),
    ("not-an-object", "P-1", [(None, "invalid_type", '"P-1"')]),
]

ACCEPTED_BATCH = Batch("catalog", ACCEPTED)
REJECTED_BATCH = Batch("catalog", REJECTED)


@pytest.mark.parametrize(("index", "expected"), Batch.params(ACCEPTED))
def test_accepted(index: int, expected: dict[str, Any]) -> None:
    assert ACCEPTED_BATCH.errors(index) == []
    assert ACCEPTED_BATCH.row(index) == expected


@pytest.mark.parametrize(("index", "expected"), Batch.params(REJECTED))
def test_rejected(index: int, expected: list[tuple[Any, ...]]) -> None:
    assert REJECTED_BATCH.errors(index) == expected
    assert REJECTED_BATCH.row(index) is None


def test_messages() -> None:
    validated = validate_elements("catalog", [{}, {"externalId": "x" * 256}, {"externalId": [], "name": True}, 3])
    assert validated.errors.get_column("message").to_list() == [
        "externalId is required",
        "externalId must be at most 255 characters",
        "externalId must be a string",
        "name must be a string",
        "each row must be a JSON object",
    ]


def test_bad_rows_do_not_stop_the_others() -> None:
    validated = validate_elements(
        "catalog", [{"externalId": "A"}, {"externalId": ""}, 7, {"externalId": "B", "name": "b"}, {"name": "c"}]
    )
    assert issues(validated.errors) == [
        (1, "externalId", "required", ""),
        (2, None, "invalid_type", "7"),
        (4, "externalId", "required", None),
    ]
    assert validated.rows.rows() == [(0, "A", None), (3, "B", "b")]
