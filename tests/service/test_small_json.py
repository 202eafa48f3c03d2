"""A small JSON body staged from msgspec's decoding validates exactly as DuckDB's staging of it does.

Both stagings of each generated body (values of every JSON type in every field, escapes, unknown and
repeated keys, missing fields, lines) go through the contract: the rows, the lines and every error must
be the same, and an error's value DuckDB's or the value as sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.common import MAX_VALUE_LENGTH, NOT_UNICODE, validate
from service.errors import BadRequestError
from service.kinds import KINDS
from service.staging import StagedUpload, stage_body
from service.staging.small_json import decode

# without U+FFFF: the worker's mark of a lone surrogate (contracts.common.NOT_UNICODE), in both stagings
_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters=NOT_UNICODE), max_size=12)
_SCALAR = st.one_of(
    st.none(), st.booleans(), _TEXT, st.sampled_from(["A-1", " B ", "", "2024-03-04", "2024-03-04T23:30:00-02:00"]),
    st.integers(-(10**20), 10**20), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.5, 0.25, 1e20, -0.0, 100.0]),
)  # fmt: skip
_VALUE = st.one_of(_SCALAR, st.lists(st.integers(0, 9), max_size=2), st.dictionaries(st.sampled_from("ab"), _SCALAR))


def _objects(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from([*names, "extra", "note"]), _VALUE, max_size=len(names) + 2)


@st.composite
def _bodies(draw: st.DrawFn, kind: str) -> list[dict[str, Any]]:
    contract = KINDS[kind].contract
    rows = draw(st.lists(_objects([f.name for f in contract.fields]), max_size=8))
    if contract.has_lines:
        lines = st.none() | st.lists(_objects([f.name for f in contract.line_fields]), max_size=3)
        for row in rows:
            if draw(st.booleans()):
                row["lines"] = draw(lines)
    return rows


def _shown(value: Any, ascii_only: bool) -> str | None:
    """An error's value for a value as sent: a string as it is, anything else as its JSON text."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"))
    return text[:MAX_VALUE_LENGTH]


def _staged(kind: str, body: bytes, directory: Path, decoded_up_to: int) -> StagedUpload:
    contract = KINDS[kind].contract
    path = directory / "body.json"
    path.write_bytes(body)
    lines = directory / "lines.parquet" if contract.has_lines else None
    return stage_body(contract, path, directory / "rows.parquet", lines, decoded_up_to=decoded_up_to)


def _validated(kind: str, staged: StagedUpload) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame]:
    rows = pl.read_parquet(staged.rows_path)
    lines = pl.read_parquet(staged.lines_path) if staged.lines_path is not None else None
    validated = validate(KINDS[kind].contract, rows, lines)
    return validated.rows, validated.lines, validated.errors


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_decoded_small_body_validates_as_duckdbs_staging_of_it(kind: str, tmp_path: Path) -> None:
    contract = KINDS[kind].contract

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(rows=_bodies(kind), ascii_only=st.booleans())
    def check(rows: list[dict[str, Any]], ascii_only: bool) -> None:
        body = json.dumps({contract.array_key: rows}, ensure_ascii=ascii_only, separators=(",", ":")).encode()
        array = body[body.index(b"[") : body.rindex(b"]") + 1]
        # every generated body takes the decoded path, but for the escapes of a character beyond U+FFFF
        assert decode(contract, array) is not None or b"\\ud" in array
        by_duckdb = _staged(kind, body, tmp_path, decoded_up_to=0)
        duckdb_rows, duckdb_lines, duckdb_errors = _validated(kind, by_duckdb)
        decoded = _staged(kind, body, tmp_path, decoded_up_to=len(body))
        decoded_rows, decoded_lines, decoded_errors = _validated(kind, decoded)

        assert decoded.row_count == by_duckdb.row_count == len(rows)
        assert decoded.unknown_fields == by_duckdb.unknown_fields
        assert decoded_rows.equals(duckdb_rows)
        assert decoded_lines is None and duckdb_lines is None or decoded_lines.equals(duckdb_lines)
        facts = ["row", "field", "code", "message", "position"]
        assert decoded_errors.select(facts).equals(duckdb_errors.select(facts))
        # a value is shown as sent, where DuckDB may have printed a number or an object again
        sent = [
            _shown(_sent(rows, row, field), ascii_only)
            for row, field in decoded_errors.select("row", "field").iter_rows()
        ]
        shown = zip(decoded_errors.get_column("value"), duckdb_errors.get_column("value"), sent, strict=True)
        assert all(decoded in (duckdb, as_sent) for decoded, duckdb, as_sent in shown)

    check()


def _sent(rows: list[dict[str, Any]], row: int, field: str | None) -> Any:
    """The value sent for an error's row and field (`lines[1].skuId` inside a line)."""
    if field is None:
        return None
    if field.startswith("lines["):
        index, name = field[len("lines[") :].split("].", 1)
        return rows[row]["lines"][int(index)].get(name)
    return rows[row].get(field)


def test_a_small_body_is_staged_as_sent(tmp_path: Path) -> None:
    """DuckDB prints numbers and objects again (`1.5`, `{"a":1}`); the decoded staging keeps what was sent."""
    body = (
        b'{"levels": [{"skuId": "S\\u00e9", "locationId": 1.0e5, "quantityOnHand": 1.50, "reorderPoint": {"a" : 1}}]}'
    )
    rows = pl.read_parquet(_staged("inventory", body, tmp_path, 1 << 20).rows_path)
    assert rows.select("skuId", "locationId", "quantityOnHand", "reorderPoint").row(0) == (
        '"S\\u00e9"',
        "1.0e5",
        "1.50",
        '{"a" : 1}',
    )
    by_duckdb = pl.read_parquet(_staged("inventory", body, tmp_path, 0).rows_path)
    assert by_duckdb.select("quantityOnHand", "reorderPoint").row(0) == ("1.5", '{"a":1}')


@pytest.mark.parametrize(
    "array",
    [
        b'[{"skuId": "A"}, null]',  # an element that is not an object
        b'[{"skuId": "\\ud800"}]',  # a lone surrogate: DuckDB's staging marks it
        b'[{"skuId": "caf\xe9"}]',  # not UTF-8 (msgspec leaves a string's bytes to us)
    ],
)
def test_a_body_that_is_not_plain_is_staged_by_duckdb(array: bytes, tmp_path: Path) -> None:
    outcomes = []
    for decoded_up_to in (1 << 20, 0):
        try:
            staged = _staged("inventory", b'{"levels": ' + array + b"}", tmp_path, decoded_up_to)
            outcomes.append(pl.read_parquet(staged.rows_path))
        except BadRequestError as error:
            outcomes.append(error.message)
    assert isinstance(outcomes[0], str) and outcomes[0] == outcomes[1] or outcomes[0].equals(outcomes[1])


@pytest.mark.parametrize("lines", [b"5", b'"none"', b"[3]", b'[{"skuId": "A"}, null]'])
def test_lines_that_are_not_an_array_of_objects_are_left_to_duckdb(lines: bytes) -> None:
    assert decode(KINDS["orders"].contract, b'[{"externalOrderId": "O1", "lines": ' + lines + b"}]") is None
