"""The peers, run on the same rows in the same invocation: a per-row importer and dlt's merge.

- per-row: what a hand-written importer does: `json.loads`, a pydantic model per row, then a
  DuckDB `executemany` of INSERT OR REPLACE into a table with a PRIMARY KEY (lines: delete, insert).
  It checks types and required fields only, less than Stockyard does, so its rate is a ceiling.
- dlt, fed (a) the decoded rows as a list of dicts (good rows only: dlt does not validate), and
  (b) the rows Stockyard's own transforms produced, as Arrow tables: no decoding, no validation, its
  best case. Both merge on the contract's key into a warehouse that already holds the previous batch.

dlt is optional (the `bench` extra); without it those figures are skipped with a note. Its pipeline
state and data go to a temporary directory (pipelines_dir, DLT_DATA_DIR), never into the repository,
and its telemetry is off.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import duckdb
import msgspec
import pydantic

from benchmarks.generators import ARRAY_KEYS, BatchSpec, bad_rows, generate_body, previous_body
from contracts.common import MAX_IDENTIFIER_LENGTH, Contract, WireField, WireType
from service.kinds import KINDS
from transforms import Prepared

# A key column may not be null in a PRIMARY KEY: the one optional key field gets its contract default.
KEY_DEFAULTS: dict[str, str] = {"channel": "ALL"}

_Identifier = Annotated[
    str, pydantic.StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_IDENTIFIER_LENGTH)
]
_PYTHON_TYPES: dict[WireType, Any] = {
    WireType.IDENTIFIER: _Identifier,
    WireType.TEXT: str,
    WireType.LABEL: str,
    WireType.NUMBER: float,
    WireType.DATE: datetime,  # pydantic reads a date or a timestamp; the date part is stored
}
_SQL_TYPES = {
    WireType.IDENTIFIER: "VARCHAR",
    WireType.TEXT: "VARCHAR",
    WireType.LABEL: "VARCHAR",
    WireType.NUMBER: "DOUBLE",
    WireType.DATE: "DATE",
}


@dataclass(frozen=True)
class PeerRun:
    """One peer on one sample: how many rows it was fed and how long it took."""

    peer: str
    rows: int
    seconds: float
    sampled: bool
    note: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def dlt_available() -> bool:
    return importlib.util.find_spec("dlt") is not None


# --- the per-row importer -----------------------------------------------------------------------


def _row_model(name: str, fields: tuple[WireField, ...], schema_nullable: dict[str, bool]) -> type[pydantic.BaseModel]:
    definitions: dict[str, Any] = {}
    for wire in fields:
        python_type = _PYTHON_TYPES[wire.type]
        if wire.name in KEY_DEFAULTS:
            definitions[wire.name] = (python_type, KEY_DEFAULTS[wire.name])
        elif schema_nullable.get(wire.name, True):
            definitions[wire.name] = (python_type | None, None)
        else:
            definitions[wire.name] = (python_type, ...)
    config = pydantic.ConfigDict(coerce_numbers_to_str=True)
    model: type[pydantic.BaseModel] = pydantic.create_model(name, __config__=config, **definitions)
    return model


def _nullable(schema: Any) -> dict[str, bool]:
    return {name: column.nullable for name, column in schema.to_schema().columns.items()}


def _models(contract: Contract) -> type[pydantic.BaseModel]:
    if not contract.has_lines:
        return _row_model("Row", contract.fields, _nullable(contract.schema))
    line = _row_model("Line", contract.line_fields, _nullable(contract.line_schema))
    header = _row_model("Header", contract.fields, _nullable(contract.schema))
    lines_type = Annotated[list[line], pydantic.Field(min_length=1)]  # type: ignore[valid-type]
    model: type[pydantic.BaseModel] = pydantic.create_model("Row", __base__=header, lines=(lines_type, ...))
    return model


def _quote(name: str) -> str:
    return f'"{name}"'


def _sql_value(value: Any) -> Any:
    return value.date() if isinstance(value, datetime) else value


class PerRowImporter:
    """A row at a time: validate with pydantic, upsert with executemany on a PRIMARY KEY table."""

    def __init__(self, contract: Contract, database: Path) -> None:
        self.contract = contract
        self.model = _models(contract)
        self.con = duckdb.connect(str(database))
        columns = [f"{_quote(f.name)} {_SQL_TYPES[f.type]}" for f in contract.fields]
        key = ", ".join(_quote(k) for k in contract.key)
        self.con.execute(f"CREATE TABLE IF NOT EXISTS rows ({', '.join(columns)}, PRIMARY KEY ({key}))")
        if contract.has_lines:
            line_columns = [f"{_quote(f.name)} {_SQL_TYPES[f.type]}" for f in contract.line_fields]
            key_columns = [f"{_quote(k)} VARCHAR" for k in contract.key]
            self.con.execute(
                f"CREATE TABLE IF NOT EXISTS lines ({', '.join(key_columns)}, line_number INTEGER,"
                f" {', '.join(line_columns)}, PRIMARY KEY ({key}, line_number))"
            )

    def close(self) -> None:
        self.con.close()

    def import_body(self, body: bytes) -> tuple[int, int]:
        """(accepted, failed) rows of one request body."""
        contract = self.contract
        rows: list[dict[str, Any]] = json.loads(body)[contract.array_key]
        names = [f.name for f in contract.fields]
        line_names = [f.name for f in contract.line_fields]
        accepted: list[tuple[Any, ...]] = []
        lines: list[tuple[Any, ...]] = []
        failed = 0
        for row in rows:
            try:
                model = self.model.model_validate(row)
            except pydantic.ValidationError:
                failed += 1
                continue
            values = model.model_dump()
            accepted.append(tuple(_sql_value(values[n]) for n in names))
            key = tuple(values[k] for k in contract.key)
            for number, line in enumerate(values.get("lines") or [], start=1):
                lines.append((*key, number, *(_sql_value(line[n]) for n in line_names)))
        placeholders = ", ".join("?" for _ in names)
        self.con.execute("BEGIN TRANSACTION")
        self.con.executemany(f"INSERT OR REPLACE INTO rows VALUES ({placeholders})", accepted)
        if contract.has_lines:
            match = " AND ".join(f"{_quote(k)} = ?" for k in contract.key)
            self.con.executemany(f"DELETE FROM lines WHERE {match}", [row[: len(contract.key)] for row in accepted])
            width = len(contract.key) + 1 + len(line_names)
            self.con.executemany(f"INSERT INTO lines VALUES ({', '.join('?' * width)})", lines)
        self.con.execute("COMMIT")
        return len(accepted), failed


def run_per_row(spec: BatchSpec, directory: Path) -> PeerRun:
    """The per-row importer on `spec` (a sample: the first rows of the batch), after the previous batch."""
    directory.mkdir(parents=True, exist_ok=True)
    importer = PerRowImporter(KINDS[spec.kind].contract, directory / "per-row.duckdb")
    try:
        importer.import_body(previous_body(spec))
        body = generate_body(spec)
        started = time.perf_counter()
        importer.import_body(body)
        seconds = time.perf_counter() - started
    finally:
        importer.close()
        shutil.rmtree(directory, ignore_errors=True)
    return PeerRun("per-row", spec.rows, seconds, sampled=True, note="pydantic per row + executemany upsert")


# --- dlt ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _dlt_environment(directory: Path) -> Iterator[None]:
    """dlt's global directory and telemetry, pointed away from the user's home for the run only."""
    wanted = {
        "DLT_DATA_DIR": str(directory / "dlt-data"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "RUNTIME__LOG_LEVEL": "ERROR",  # its warnings about arrow nullability vs its key hints are expected
    }
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_dlt(name: str, directory: Path, seed: list[Any], measured: list[Any]) -> float:
    import dlt

    pipeline = dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=str(directory / "pipelines"),
        destination=dlt.destinations.duckdb(str(directory / f"{name}.duckdb")),
        dataset_name="bench",
    )
    pipeline.run(seed)
    started = time.perf_counter()
    pipeline.run(measured)
    return time.perf_counter() - started


def _arrow_resources(kind: str, prepared: Prepared) -> list[Any]:
    import dlt

    tables = KINDS[kind].tables
    resources = [
        dlt.resource(
            prepared.rows.to_arrow(),
            name=tables.rows.name,
            write_disposition="merge",
            primary_key=list(tables.rows.key),
        )
    ]
    if tables.lines is not None and prepared.lines is not None:
        resources.append(
            dlt.resource(
                prepared.lines.to_arrow(),
                name=tables.lines.name,
                write_disposition="merge",
                primary_key=list(tables.lines.key),
            )
        )
    return resources


def run_dlt_arrow(kind: str, rows: int, previous: Prepared, prepared: Prepared, directory: Path) -> PeerRun:
    """dlt's best case: merge Arrow tables that Stockyard already validated and transformed."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with _dlt_environment(directory):
            seed = _arrow_resources(kind, previous)
            measured = _arrow_resources(kind, prepared)
            seconds = _run_dlt(f"arrow_{kind.replace('-', '_')}", directory, seed, measured)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return PeerRun("dlt arrow", rows, seconds, sampled=False, note="validated Arrow in, merge")


def _dict_rows(spec: BatchSpec, body: bytes, skip: set[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = msgspec.json.decode(body)[ARRAY_KEYS[spec.kind]]
    kept = [row for index, row in enumerate(rows) if index not in skip]
    defaults = {n: d for n, d in KEY_DEFAULTS.items() if any(f.name == n for f in KINDS[spec.kind].contract.fields)}
    for row in kept:
        for name, default in defaults.items():
            row.setdefault(name, default)
    return kept


def run_dlt_dicts(spec: BatchSpec, directory: Path) -> PeerRun:
    """dlt fed the good rows of `spec` (a sample) as a list of dicts, nested lines and all."""
    import dlt

    directory.mkdir(parents=True, exist_ok=True)
    contract = KINDS[spec.kind].contract
    table = KINDS[spec.kind].tables.rows.name
    seed = _dict_rows(spec, previous_body(spec), set())
    rows = _dict_rows(spec, generate_body(spec), set(bad_rows(spec)))
    try:
        with _dlt_environment(directory):
            resources = [
                [dlt.resource(data, name=table, write_disposition="merge", primary_key=list(contract.key))]
                for data in (seed, rows)
            ]
            seconds = _run_dlt(f"dicts_{spec.kind.replace('-', '_')}", directory, resources[0], resources[1])
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return PeerRun("dlt dicts", len(rows), seconds, sampled=True, note="good rows as a list of dicts, merge")
