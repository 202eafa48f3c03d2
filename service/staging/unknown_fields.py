"""Fields an upload holds that its kind's contract does not name: they are not stored, and each becomes
one `unknown_field` warning of the job (never dropped without a word).

CSV and Parquet name their columns once, so every unknown column is found. JSON and NDJSON rows may each
have other keys: the first SAMPLE_ROWS rows are looked at (reading every key of a million rows again
would cost more than staging them), and the warning says how many of those had the field.

A small JSON body staged from msgspec's decoding (small_json.py) has its keys counted from that decoding,
in Python (a loop over at most SAMPLE_ROWS rows); any other JSON or NDJSON body's keys are read by DuckDB.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from contracts.common import Contract
from service.staging.formats import FAILED_ROWS_COLUMNS, UploadFormat
from service.staging.sql import literal

SAMPLE_ROWS = 1000


@dataclass(frozen=True)
class UnknownField:
    name: str
    """The field as sent; inside a line, `lines[].name`."""
    rows: int
    """How many of the rows looked at have it."""
    looked_at: int
    """How many rows were looked at: all of them (CSV, Parquet), or the first SAMPLE_ROWS (JSON, NDJSON)."""

    def to_record(self) -> list[str | int]:
        return [self.name, self.rows, self.looked_at]


def _known(contract: Contract) -> set[str]:
    names = {f.name for f in (*contract.fields, *contract.line_fields)}
    return names | ({"lines"} if contract.has_lines else set()) | FAILED_ROWS_COLUMNS


def unknown_columns(contract: Contract, columns: list[str], row_count: int) -> list[UnknownField]:
    """The columns of a CSV header or a Parquet file that are not fields (each present in every row)."""
    known = _known(contract)
    seen: dict[str, None] = dict.fromkeys(c for c in columns if c and c not in known)
    return [UnknownField(name, row_count, row_count) for name in seen]


def find_unknown_fields(
    con: duckdb.DuckDBPyConnection, contract: Contract, upload_format: UploadFormat, body_path: Path, row_count: int
) -> list[UnknownField]:
    """The fields of a staged body that its contract does not name, whatever its format."""
    if upload_format is UploadFormat.CSV:
        from service.staging.from_csv import csv_header

        return unknown_columns(contract, csv_header(body_path, contract)[0], row_count)
    if upload_format is UploadFormat.PARQUET:
        described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({literal(str(body_path))})").fetchall()
        return unknown_columns(contract, [row[0] for row in described], row_count)
    return unknown_keys(con, contract, upload_format, body_path, row_count)


def unknown_keys(
    con: duckdb.DuckDBPyConnection, contract: Contract, upload_format: UploadFormat, body_path: Path, row_count: int
) -> list[UnknownField]:
    """The keys of the first SAMPLE_ROWS JSON or NDJSON rows (and their lines) that are not fields."""
    looked_at = min(row_count, SAMPLE_ROWS)
    if looked_at == 0:
        return []
    return _unknown(contract, _read_keys(con, contract, upload_format, body_path, looked_at), looked_at)


def unknown_keys_of(
    contract: Contract,
    rows: Sequence[Iterable[str]],
    lines: Sequence[Sequence[Iterable[str]] | None] | None,
    row_count: int,
) -> list[UnknownField]:
    """As unknown_keys, from rows already decoded (each row's keys, and each of its lines' keys)."""
    looked_at = min(row_count, SAMPLE_ROWS)
    counted = collections.Counter(itertools.chain.from_iterable(rows[:looked_at]))
    in_lines = collections.Counter(  # each key once per row, however many of its lines have it
        itertools.chain.from_iterable(set().union(*row_lines) for row_lines in (lines or [])[:looked_at] if row_lines)
    )
    counted.update({f"lines[].{key}": rows for key, rows in in_lines.items()})
    return _unknown(contract, sorted(counted.items()), looked_at)


def _unknown(contract: Contract, counted: list[tuple[str, int]], looked_at: int) -> list[UnknownField]:
    known = _known(contract) | {f"lines[].{name}" for name in _known(contract)}
    return [UnknownField(key, rows, looked_at) for key, rows in counted if key not in known]


def _read_keys(
    con: duckdb.DuckDBPyConnection, contract: Contract, upload_format: UploadFormat, body_path: Path, looked_at: int
) -> list[tuple[str, int]]:
    """(key, rows having it) of the first `looked_at` JSON or NDJSON rows and their lines, read by DuckDB."""
    shape = "array" if upload_format is UploadFormat.JSON else "newline_delimited"
    largest = max(body_path.stat().st_size, 1 << 20)
    # one statement: a small job's staging is a handful of statements, each with its fixed cost
    sample = (
        "SELECT row_number() OVER () AS rowid, json FROM"
        f" (SELECT json FROM read_json_objects({literal(str(body_path))}, format={literal(shape)},"
        f" ignore_errors=true, maximum_object_size={largest}) LIMIT {looked_at}) WHERE json_type(json) = 'OBJECT'"
    )
    keys = "SELECT rowid, unnest(json_keys(json)) AS key FROM sample"
    if contract.has_lines:
        lines = "SELECT rowid, unnest(json_extract(json, '$.lines[*]')) AS line FROM sample"
        keys += (
            " UNION ALL SELECT rowid, 'lines[].' || unnest(json_keys(line)) AS key"
            f" FROM ({lines}) WHERE json_type(line) = 'OBJECT'"
        )
    counted = con.execute(
        f"WITH sample AS MATERIALIZED ({sample})"
        f" SELECT key, count(DISTINCT rowid) FROM ({keys}) GROUP BY key ORDER BY key"
    ).fetchall()
    return [(str(key), int(rows)) for key, rows in counted]
