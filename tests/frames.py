"""Staged frames built from Python values, shaped as service/staging.py writes them, for unit tests.

Every field holds the raw JSON text that was sent (`'"abc"'`, `'12'`, `'{"a":1}'`, `'null'`), None when
it was missing; a non-object element keeps its text in `__value`. `Raw("1e400")` puts JSON text in
verbatim, for what Python cannot dump (a number beyond the float range).

`Batch` validates a whole parametrize table in one call; `top_level_imports` serves the purity checks.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from contracts.common import (
    LINE,
    LINES_COUNT,
    MAX_VALUE_LENGTH,
    ROW,
    ROW_TYPE,
    ROW_VALUE,
    Contract,
    Validated,
    validate,
)
from service.kinds import KINDS
from transforms import Prepared

ORGANIZATION = "acme"


@dataclass(frozen=True)
class Raw:
    """JSON text sent as is."""

    text: str


def json_text(value: Any) -> str:
    """The JSON text DuckDB stages for a value (compact, unicode kept)."""
    if isinstance(value, Raw):
        return value.text
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_type(value: Any) -> str:
    """DuckDB's json_type of an element (only 'OBJECT' matters to the contracts)."""
    if isinstance(value, Raw):
        return "DOUBLE"
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "UBIGINT" if value >= 0 else "BIGINT"
    if isinstance(value, float):
        return "DOUBLE"
    if isinstance(value, str):
        return "VARCHAR"
    if isinstance(value, list):
        return "ARRAY"
    return "OBJECT"


def _shape(value: Any) -> tuple[str, str | None]:
    kind = json_type(value)
    return kind, None if kind == "OBJECT" else json_text(value)[:MAX_VALUE_LENGTH]


def _field(fields: dict[str, Any], name: str) -> str | None:
    return json_text(fields[name]) if name in fields else None


def staged_rows(contract: Contract, elements: Sequence[Any]) -> pl.DataFrame:
    """The staged header frame of `elements` (the submitted array)."""
    names = [f.name for f in contract.fields]
    data: dict[str, list[Any]] = {ROW: [], ROW_TYPE: [], ROW_VALUE: [], **{name: [] for name in names}}
    if contract.has_lines:
        data["lines"] = []
        data[LINES_COUNT] = []
    for index, element in enumerate(elements):
        kind, text = _shape(element)
        data[ROW].append(index)
        data[ROW_TYPE].append(kind)
        data[ROW_VALUE].append(text)
        fields = element if kind == "OBJECT" else {}
        for name in names:
            data[name].append(_field(fields, name))
        if contract.has_lines:
            lines = fields.get("lines")
            data["lines"].append(None if isinstance(lines, list) else _field(fields, "lines"))
            data[LINES_COUNT].append(len(lines) if isinstance(lines, list) else None)
    schema: dict[str, Any] = {ROW: pl.Int64(), ROW_TYPE: pl.String(), ROW_VALUE: pl.String()}
    schema.update({name: pl.String() for name in names})
    if contract.has_lines:
        schema.update({"lines": pl.String(), LINES_COUNT: pl.UInt64()})
    return pl.DataFrame(data, schema=schema)


def staged_lines(contract: Contract, elements: Sequence[Any]) -> pl.DataFrame:
    """The staged lines frame: one row per element of each header's `lines` array."""
    names = [f.name for f in contract.line_fields]
    data: dict[str, list[Any]] = {ROW: [], LINE: [], ROW_TYPE: [], ROW_VALUE: [], **{name: [] for name in names}}
    for index, element in enumerate(elements):
        lines = element.get("lines") if isinstance(element, dict) else None
        if not isinstance(lines, list):
            continue
        for number, line in enumerate(lines):
            kind, text = _shape(line)
            data[ROW].append(index)
            data[LINE].append(number)
            data[ROW_TYPE].append(kind)
            data[ROW_VALUE].append(text)
            fields = line if kind == "OBJECT" else {}
            for name in names:
                data[name].append(_field(fields, name))
    schema: dict[str, Any] = {ROW: pl.Int64(), LINE: pl.Int64(), ROW_TYPE: pl.String(), ROW_VALUE: pl.String()}
    schema.update({name: pl.String() for name in names})
    return pl.DataFrame(data, schema=schema)


def validate_elements(kind: str, elements: Sequence[Any]) -> Validated:
    """Stage `elements` as the API would and validate them with the kind's contract."""
    contract = KINDS[kind].contract
    lines = staged_lines(contract, elements) if contract.has_lines else None
    return validate(contract, staged_rows(contract, elements), lines)


def prepare_elements(kind: str, elements: Sequence[Any], organization_id: str = ORGANIZATION) -> Prepared:
    """Validate `elements`, then prepare them for the warehouse."""
    return KINDS[kind].prepare(validate_elements(kind, elements), organization_id)


def issues(frame: pl.DataFrame) -> list[tuple[Any, ...]]:
    """(row, field, code, value) of each error or warning, in frame order."""
    return list(frame.select("row", "field", "code", "value").iter_rows())


def records(frame: pl.DataFrame, *sort: str) -> list[dict[str, Any]]:
    """The rows of a frame as dicts, sorted by `sort` when the frame's order is not part of its meaning."""
    return (frame.sort(*sort) if sort else frame).to_dicts()


Case = tuple[Any, ...]  # (id, element or array of elements, *expected)


class Batch:
    """Every case of a table validated in ONE call, then split back into one submission per case.

    One pandera run per table instead of one per case keeps the suite fast; rows never affect each
    other's errors, and each case is prepared on its own rows only (de-duplication stays per case).
    With `arrays=True` each case holds a whole submitted array instead of one element.
    """

    def __init__(self, kind: str, table: Sequence[Case], *, arrays: bool = False) -> None:
        self.kind = kind
        self.submissions = [list(case[1]) if arrays else [case[1]] for case in table]

    @staticmethod
    def params(table: Sequence[Case]) -> list[Any]:
        """`(index, *expected)` per case, with the case's id, for `parametrize`."""
        return [pytest.param(index, *case[2:], id=case[0]) for index, case in enumerate(table)]

    @cached_property
    def _all(self) -> tuple[Validated, list[int]]:
        offsets = [0]
        for submission in self.submissions:
            offsets.append(offsets[-1] + len(submission))
        return validate_elements(self.kind, [e for submission in self.submissions for e in submission]), offsets

    def validated(self, index: int) -> Validated:
        """The outcome of case `index` as if it had been submitted alone (rows counted from 0)."""
        validated, offsets = self._all
        start, end = offsets[index], offsets[index + 1]

        def own(frame: pl.DataFrame, column: str) -> pl.DataFrame:
            mine = frame.filter(pl.col(column).is_between(start, end - 1))
            return mine.with_columns(pl.col(column) - start)

        lines = own(validated.lines, ROW) if validated.lines is not None else None
        return Validated(rows=own(validated.rows, ROW), lines=lines, errors=own(validated.errors, "row"))

    def prepared(self, index: int, organization_id: str = ORGANIZATION) -> Prepared:
        return KINDS[self.kind].prepare(self.validated(index), organization_id)

    def errors(self, index: int) -> list[tuple[Any, ...]]:
        """(field, code, value) of each error of a one-element case, in reported order."""
        return list(self.validated(index).errors.select("field", "code", "value").iter_rows())

    def row(self, index: int) -> dict[str, Any] | None:
        """The typed row of a one-element case (without `__row`), None when it was rejected."""
        rows = self.validated(index).rows.drop(ROW).to_dicts()
        return rows[0] if rows else None

    def lines(self, index: int) -> list[dict[str, Any]]:
        """The typed lines of a one-element case, in line order, without `__row`."""
        lines = self.validated(index).lines
        assert lines is not None
        return lines.drop(ROW).to_dicts()


# Standard-library modules that do I/O or read the clock: a pure layer imports none of them.
IMPURE_STANDARD_MODULES = {
    "io",
    "os",
    "pathlib",
    "shutil",
    "socket",
    "subprocess",
    "tempfile",
    "time",
    "urllib",
    "http",
}


def top_level_imports(package: str) -> tuple[set[str], set[str]]:
    """(standard-library, other) top-level modules imported by the modules of a package folder."""
    names: set[str] = set()
    for path in (Path(__file__).resolve().parents[1] / package).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    standard = {name for name in names if name in sys.stdlib_module_names or name == "__future__"}
    return standard, names - standard
