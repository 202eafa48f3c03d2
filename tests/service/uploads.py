"""The same rows written in each upload format, and read back from each, for the format tests.

Rows are dicts as the JSON API takes them (orders with nested `lines`). CSV and flat Parquet write one
record per line of an order, its header fields repeated; every value is written as text, as a
spreadsheet would (numbers are accepted as numeric strings), and a missing value as an empty cell.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from service import warehouse
from service.kinds import KINDS

FORMATS = ["json", "ndjson", "csv", "parquet"]
CONTENT_TYPES = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}
EXTENSIONS = {"json": ".json", "ndjson": ".ndjson", "csv": ".csv", "parquet": ".parquet"}
TABLES = [table for table in warehouse.TABLES if table != "import_jobs"]
"""The tables imports write (import_jobs aside)."""


def _columns(kind: str) -> tuple[list[str], list[str]]:
    contract = KINDS[kind].contract
    return [f.name for f in contract.fields], [f.name for f in contract.line_fields]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def flat_records(kind: str, rows: list[dict[str, Any]]) -> list[dict[str, str | None]]:
    """One record per row, or per line of an order (an order without lines: one record, no line fields)."""
    fields, line_fields = _columns(kind)
    records = []
    for row in rows:
        header = {name: _text(row.get(name)) for name in fields}
        if not line_fields:
            records.append(header)
            continue
        for line in row.get("lines") or [{}]:
            records.append(header | {name: _text(line.get(name)) for name in line_fields})
    return records


def encode(kind: str, rows: list[dict[str, Any]], upload_format: str, *, nested_parquet: bool = True) -> bytes:
    """`rows` as a body of `upload_format`."""
    contract = KINDS[kind].contract
    if upload_format == "json":
        return json.dumps({contract.array_key: rows}).encode()
    if upload_format == "ndjson":
        return b"".join(json.dumps(row).encode() + b"\n" for row in rows)
    fields, line_fields = _columns(kind)
    if upload_format == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields + line_fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat_records(kind, rows))
        return text.getvalue().encode()
    assert upload_format == "parquet"
    if line_fields and nested_parquet:
        line_type = pa.list_(pa.struct([(name, pa.string()) for name in line_fields]))
        columns: dict[str, Any] = {name: [_text(row.get(name)) for row in rows] for name in fields}
        columns["lines"] = pa.array(
            [[{name: _text(line.get(name)) for name in line_fields} for line in row["lines"]] for row in rows],
            type=line_type,
        )
        table = pa.table(columns)
    else:
        records = flat_records(kind, rows)
        table = pa.table({name: pa.array([r[name] for r in records], pa.string()) for name in fields + line_fields})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def gzipped(body: bytes) -> bytes:
    return gzip.compress(body, mtime=0)


def decode(kind: str, body: bytes, upload_format: str) -> list[dict[str, Any]]:
    """A file of failed rows as a list of dicts: JSON objects, or CSV / Parquet records."""
    if upload_format == "json":
        document = json.loads(body)
        assert list(document) == [KINDS[kind].contract.array_key]
        rows: list[dict[str, Any]] = document[KINDS[kind].contract.array_key]
        return rows
    if upload_format == "ndjson":
        return [json.loads(line) for line in body.decode().splitlines()]
    if upload_format == "csv":
        return list(csv.DictReader(io.StringIO(body.decode())))
    return pq.read_table(io.BytesIO(body)).to_pylist()


def reencode(kind: str, rows: list[dict[str, Any]], upload_format: str) -> bytes:
    """Decoded failed rows (fixed) as a file of the same format, extra columns and all."""
    if upload_format in ("json", "ndjson"):
        return encode(kind, rows, upload_format)
    if upload_format == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return text.getvalue().encode()
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def snapshot(analytics_path: Path, organization_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every warehouse table of one organization, without lineage columns, its prefix taken out of ids."""
    prefix = f"{organization_id}-"
    tables = {}
    with duckdb.connect(str(analytics_path), read_only=True) as con:
        for table in TABLES:
            rows = con.execute(
                "SELECT COLUMNS(lambda c: c NOT IN ('organization_id', 'created_at', 'updated_at', 'last_job_id'))"
                f" FROM {table} WHERE organization_id = ? ORDER BY ALL",
                [organization_id],
            ).fetchall()
            tables[table] = [tuple(v.removeprefix(prefix) if isinstance(v, str) else v for v in row) for row in rows]
    return tables
