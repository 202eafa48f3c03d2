"""Staging: turn an uploaded body into Parquet files of raw JSON text, before the 202 is sent (a large JSON
body: by the worker that prepares it, large_json.py).

The body is streamed to disk, its top level is checked with msgspec (an object holding the kind's
array), and DuckDB's JSON reader writes each row's fields as the JSON text that was sent. Nothing is
judged here except the request as a whole: a wrong type is a row error in the worker, never a lost
row. Files are written to a temporary name, fsynced and renamed, so a staged file is whole or absent.

The files of a job are named in service/job_files.py; each format is staged by its own module here
(from_json, from_ndjson, from_csv, from_parquet; a small JSON body by small_json, a large one kept for the
worker by large_json), and the body is decoded as it streams in by body.py.

Duplicate keys: in the top-level object they are refused (one of two arrays would be dropped unseen);
inside a row or a line the last occurrence wins, as in JavaScript's JSON.parse and Python's json.

Other formats (UploadFormat) are staged to the same files, so the worker never knows what was sent:
- NDJSON: one row per line; `__row` is the 0-based line number (blank lines are skipped, not renumbered).
- CSV: a header line with the wire field names, then one record per row; `__row` is the 0-based record
  after the header. Purchase orders and orders come one record per line, header fields repeated and
  grouped by the key: a row's index is the order of its key's first record, its lines are its records.
- Parquet: one row per file row; purchase orders and orders either with a `lines` list of structs (like
  JSON) or flat, one file row per line (like CSV).
Each field is staged as JSON text in every format (a CSV cell "12" as `"12"`), so the worker's rules are
the same for all. A line that cannot be read (not JSON, not CSV, not UTF-8) becomes a row of its own,
`__type` INVALID_JSON or INVALID_CSV with its text in `__value`, and so a row-level error: never a 400.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from contracts.common import ROW, Contract
from service.errors import storage_error
from service.files import commit_file, remove_quietly
from service.staging import small_json
from service.staging.body import BodyDecoder
from service.staging.formats import ACCEPTED_MEDIA_TYPES, INVALID_CSV, INVALID_JSON, MEDIA_TYPES, UploadFormat
from service.staging.from_csv import stage_csv
from service.staging.from_json import isolate_array, stage_json
from service.staging.from_ndjson import stage_ndjson
from service.staging.from_parquet import stage_parquet
from service.staging.large_json import keep_large_body
from service.staging.sql import literal, staging_database
from service.staging.unknown_fields import UnknownField, find_unknown_fields

logger = logging.getLogger("stockyard.staging")


@dataclass(frozen=True)
class StagedUpload:
    rows_path: Path
    lines_path: Path | None
    row_count: int
    unknown_fields: list[UnknownField]
    body_kept: bool = False
    """The body is kept as sent for the worker that prepares the job to stage (large_json.py): no staged
    file is written yet."""


UNORDERED_FROM_BYTES = 16 << 20
"""A JSON body this large is staged without keeping insertion order, for the memory (sql.staging_database);
a smaller one gains nothing from it, and keeping order saves checking the order after (_ensure_row_order)."""

_STAGERS = {
    UploadFormat.JSON: stage_json,
    UploadFormat.NDJSON: stage_ndjson,
    UploadFormat.CSV: stage_csv,
    UploadFormat.PARQUET: stage_parquet,
}


def _ensure_row_order(con: duckdb.DuckDBPyConnection, rows_tmp: Path) -> None:
    """Leave the staged rows in `__row` order, which the worker's chunked validation reads them in.

    Reading one JSON file, DuckDB writes the rows in order even when it need not (measured up to 10M
    rows): checking reads one column (0.07 s at 10M rows); sorting is the fallback, should it ever
    do otherwise.
    """
    if not pl.scan_parquet(rows_tmp).select((pl.col(ROW).diff() <= 0).any()).collect().item():
        return
    logger.warning("staged rows came out of order; sorting them")
    sorted_tmp = rows_tmp.with_name(rows_tmp.name + ".sorted")
    try:
        source, target = literal(str(rows_tmp)), literal(str(sorted_tmp))
        con.execute(f"COPY (FROM read_parquet({source}) ORDER BY {ROW}) TO {target} (FORMAT parquet)")
        os.replace(sorted_tmp, rows_tmp)
    finally:
        remove_quietly(sorted_tmp)


def stage_body(
    contract: Contract,
    body_path: Path,
    rows_path: Path,
    lines_path: Path | None,
    upload_format: UploadFormat = UploadFormat.JSON,
    decoded_up_to: int = small_json.DECODED_UP_TO_BYTES,
    kept_path: Path | None = None,
    keep_from_rows: int = 0,
) -> StagedUpload:
    """Stage a streamed body as Parquet; BadRequestError when the body as a whole is unusable.

    A JSON body up to `decoded_up_to` bytes is staged from msgspec's decoding when it can be (small_json.py).
    Given `kept_path`, a larger JSON body of more than `keep_from_rows` rows is checked, counted and moved
    there instead, for the worker to stage (large_json.py)."""
    size = isolate_array(body_path, contract.array_key) if upload_format is UploadFormat.JSON else 0
    if kept_path is not None and upload_format is UploadFormat.JSON and size > decoded_up_to:
        try:
            kept = keep_large_body(contract, body_path, kept_path, keep_from_rows)
        except OSError as error:
            raise storage_error(error) from None
        if kept is not None:
            return StagedUpload(rows_path, lines_path, kept.row_count, kept.unknown_fields, body_kept=True)
    row_count, unknown = _stage_files(contract, body_path, rows_path, lines_path, upload_format, size, decoded_up_to)
    return StagedUpload(rows_path=rows_path, lines_path=lines_path, row_count=row_count, unknown_fields=unknown)


def stage_kept_body(contract: Contract, kept_path: Path, rows_path: Path, lines_path: Path | None) -> int:
    """Stage a body the API kept for the worker (large_json.py) as the API stages any large JSON body, then
    remove it; the number of rows. BadRequestError (the body is unusable after all) fails the job."""
    row_count, _ = _stage_files(
        contract, kept_path, rows_path, lines_path, UploadFormat.JSON, kept_path.stat().st_size, 0, unknown=False
    )
    remove_quietly(kept_path)
    return row_count


def _stage_files(
    contract: Contract,
    body_path: Path,
    rows_path: Path,
    lines_path: Path | None,
    upload_format: UploadFormat,
    size: int,
    decoded_up_to: int,
    *,
    unknown: bool = True,
) -> tuple[int, list[UnknownField]]:
    """Write the staged file(s) of a body; (rows, its unknown fields, unless `unknown` is False)."""
    rows_tmp = rows_path.with_name(rows_path.name + ".tmp")
    lines_tmp = lines_path.with_name(lines_path.name + ".tmp") if lines_path else None
    # JSON rows of a kind with lines are read twice (rows, then lines), and both must stay in order
    ordered = upload_format is not UploadFormat.JSON or contract.has_lines or size < UNORDERED_FROM_BYTES
    found: list[UnknownField] = []
    try:
        decoded = None
        if upload_format is UploadFormat.JSON and size <= decoded_up_to:
            plain = small_json.decode(contract, body_path.read_bytes())
            decoded = small_json.stage_decoded(contract, plain, rows_tmp, lines_tmp) if plain is not None else None
        if decoded is not None:
            row_count, found = decoded
        else:
            with staging_database(ordered=ordered) as con:
                row_count = _STAGERS[upload_format](con, contract, body_path, rows_tmp, lines_tmp)
                if not ordered:
                    _ensure_row_order(con, rows_tmp)
                if unknown:
                    found = find_unknown_fields(con, contract, upload_format, body_path, row_count)
        commit_file(rows_tmp, rows_path)
        if lines_tmp is not None and lines_path is not None:
            commit_file(lines_tmp, lines_path)
    except (duckdb.IOException, OSError) as error:
        remove_quietly(rows_path, *([lines_path] if lines_path else []))
        raise storage_error(error) from None
    except BaseException:
        remove_quietly(rows_path, *([lines_path] if lines_path else []))
        raise
    return row_count, found


__all__ = [
    "ACCEPTED_MEDIA_TYPES",
    "INVALID_CSV",
    "INVALID_JSON",
    "MEDIA_TYPES",
    "BodyDecoder",
    "StagedUpload",
    "UploadFormat",
    "stage_body",
    "stage_kept_body",
]
