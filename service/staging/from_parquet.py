"""Staging Parquet: one row per file row; purchase orders and orders either with a `lines` list of structs
(like JSON) or flat, one file row per line (like CSV)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import duckdb

from contracts.common import ROW, ROW_TYPE, ROW_VALUE, Contract
from service.errors import BadRequestError
from service.staging.rows import copy_raw_rows, copy_records
from service.staging.sql import finite, key_text, literal, quote

logger = logging.getLogger(__name__)


def stage_parquet(
    con: duckdb.DuckDBPyConnection, contract: Contract, body_path: Path, rows_tmp: Path, lines_tmp: Path | None
) -> int:
    reader = f"read_parquet({literal(str(body_path))}, file_row_number=true)"
    try:
        columns = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()}
        wanted = [*contract.fields, *contract.line_fields]
        nested = contract.has_lines and "lines" in columns
        if not nested and not any(f.name in columns for f in wanted):
            names = ", ".join(f.name for f in wanted)
            raise BadRequestError(f"the Parquet file has none of the columns of {contract.kind}: expected {names}")
        if nested:  # like JSON: `lines` a list of structs
            fields = [
                (f"{finite(f'to_json({quote(f.name)})')}" if f.name in columns else "NULL")
                + f"::VARCHAR AS {quote(f.name)}"
                for f in contract.fields
            ]
            con.execute(
                f"CREATE TEMP TABLE raw_rows AS SELECT file_row_number AS {ROW}, 'OBJECT' AS {ROW_TYPE},"
                f" NULL::VARCHAR AS {ROW_VALUE}, {', '.join(fields)}, to_json(lines) AS lines FROM {reader}"
            )
            return copy_raw_rows(con, contract, rows_tmp, lines_tmp, tolerant=True)
        cells = [
            (f"{finite(f'to_json({quote(f.name)})')}" if f.name in columns else "NULL")
            + f"::VARCHAR AS {quote(f.name)}"
            for f in wanted
        ]
        key = contract.key[0] if contract.has_lines else None
        key_column = key_text(f"{quote(key)}::VARCHAR") if key is not None and key in columns else "NULL::VARCHAR"
        con.execute(
            f"CREATE TEMP TABLE records AS SELECT file_row_number AS __record, 'OBJECT' AS {ROW_TYPE},"
            f" NULL::VARCHAR AS {ROW_VALUE}, {key_column} AS __key, {', '.join(cells)} FROM {reader}"
        )
        return copy_records(con, contract, rows_tmp, lines_tmp)
    except (duckdb.ProgrammingError, duckdb.DataError, duckdb.IOException) as error:
        # an unreadable file, or pages that do not decode; but not a mistake in this code, nor a full disk
        mistake = isinstance(error, duckdb.BinderException | duckdb.ParserException | duckdb.CatalogException)
        if mistake or (isinstance(error, duckdb.IOException) and str(body_path) not in str(error)):
            raise
        detail = str(error).split("\n", 1)[0].removeprefix("Invalid Input Error: ")
        detail = re.sub(r" ?[\"']?" + re.escape(str(body_path)) + r"[\"']?", "", detail)
        raise BadRequestError(f"body is not a valid Parquet file: {detail}") from None
