"""Staging NDJSON: one row per line; `__row` is the 0-based line number (blank lines are skipped, not
renumbered); a line that is not JSON (or not UTF-8) is a row of its own, `__type` INVALID_JSON."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from contracts.common import ROW, ROW_TYPE, ROW_VALUE, Contract
from service.staging.formats import INVALID_JSON
from service.staging.numbers import restore_number_texts
from service.staging.records import line_reader, read_records
from service.staging.rows import copy_raw_rows
from service.staging.sql import finite, last_value, quote

logger = logging.getLogger("stockyard.staging")

_LINE_DELIMITER = "\x01\x02\x03\x04"
"""Reading NDJSON with DuckDB's CSV reader, one column per line: no valid JSON line holds a raw control
character, so a line that holds this one is invalid anyway (and rejected as such)."""


def stage_ndjson(
    con: duckdb.DuckDBPyConnection, contract: Contract, body_path: Path, rows_tmp: Path, lines_tmp: Path | None
) -> int:
    reader = line_reader(body_path, ["line"], header=False, delimiter=_LINE_DELIMITER, quote="")
    numbered = read_records(con, reader, first_line=1)
    lines = (
        f"SELECT __record AS {ROW}, line AS __text,"
        f" CASE WHEN json_valid(line) THEN json_type(line) ELSE '{INVALID_JSON}' END AS {ROW_TYPE}"
        f" FROM ({numbered}) WHERE trim(line, ' \t') <> ''"  # blank (NULL or spaces): skipped, its number kept
        f" UNION ALL SELECT __record, __text, '{INVALID_JSON}' FROM rejected"  # e.g. not UTF-8: never parsed
    )
    con.execute(f"CREATE TEMP TABLE ndjson_lines AS {lines}")
    objects = (
        f"SELECT *, CASE WHEN {ROW_TYPE} = 'OBJECT' THEN json_keys(__text) END AS __keys,"
        f" CASE WHEN {ROW_TYPE} = 'OBJECT' THEN json_extract(__text, '$.*') END AS __values FROM ndjson_lines"
    )
    names = [f.name for f in contract.fields] + (["lines"] if contract.has_lines else [])
    fields = [f"{finite(last_value('__keys', '__values', name))} AS {quote(name)}" for name in names]
    relation = "TABLE" if contract.has_lines else "VIEW"
    con.execute(
        f"CREATE TEMP {relation} raw_rows AS SELECT {ROW}, {ROW_TYPE},"
        f" CASE WHEN {ROW_TYPE} <> 'OBJECT' THEN __text END AS {ROW_VALUE}, {', '.join(fields)} FROM ({objects})"
    )
    row_count = copy_raw_rows(con, contract, rows_tmp, lines_tmp, tolerant=True, sort=True)
    objects_sent = f"SELECT {ROW} AS __row, __text FROM ndjson_lines WHERE {ROW_TYPE} = 'OBJECT'"
    restore_number_texts(con, contract, objects_sent, rows_tmp, lines_tmp)
    return row_count
