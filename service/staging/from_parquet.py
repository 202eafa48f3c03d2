"""Staging Parquet: one row per file row; purchase orders and orders either with a `lines` list of structs
(like JSON) or flat, one file row per line (like CSV)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import duckdb

from contracts.common import ROW, ROW_TYPE, ROW_VALUE, Contract
from service.errors import BadRequestError
from service.staging.formats import MAX_COLUMNS
from service.staging.rows import copy_raw_rows, copy_records
from service.staging.sql import finite, key_text, literal, quote

logger = logging.getLogger("stockyard.staging")


def _reader(con: duckdb.DuckDBPyConnection, body_path: Path) -> tuple[str, str, set[str]]:
    """The file as a relation, the expression of a row's 0-based position in it, and its columns' names.

    WITH ORDINALITY, aliased, numbers the rows in file order whatever the file's own columns are called:
    DuckDB's file_row_number option refuses a file with a column of that name, and a user's column is data.
    """
    source = f"read_parquet({literal(str(body_path))})"
    names = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    if len(names) > MAX_COLUMNS:
        raise BadRequestError(f"the Parquet file has {len(names):,} columns; at most {MAX_COLUMNS:,} are read")
    position = "__position"
    while position in names:
        position = "_" + position
    aliases = ", ".join(quote(name) for name in [*names, position])
    return f"{source} WITH ORDINALITY AS file({aliases})", f"{quote(position)} - 1", set(names)


def stage_parquet(
    con: duckdb.DuckDBPyConnection, contract: Contract, body_path: Path, rows_tmp: Path, lines_tmp: Path | None
) -> int:
    try:
        reader, position, columns = _reader(con, body_path)
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
                f"CREATE TEMP TABLE raw_rows AS SELECT {position} AS {ROW}, 'OBJECT' AS {ROW_TYPE},"
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
            f"CREATE TEMP TABLE records AS SELECT {position} AS __record, 'OBJECT' AS {ROW_TYPE},"
            f" NULL::VARCHAR AS {ROW_VALUE}, {key_column} AS __key, {', '.join(cells)} FROM {reader}"
        )
        return copy_records(con, contract, rows_tmp, lines_tmp)
    except duckdb.Error as error:
        # whatever reading the file raised: an unreadable footer, pages that do not decode, a type DuckDB
        # cannot read. Only a failed write of the staged files (the disk: 507/503) is not the file's fault.
        if isinstance(error, duckdb.IOException) and str(body_path) not in str(error):
            raise
        if not isinstance(error, duckdb.InvalidInputException | duckdb.IOException):
            logger.warning("a Parquet upload could not be read (%s); answered 400", type(error).__name__, exc_info=True)
        detail = str(error).split("\n", 1)[0].split(" Error: ", 1)[-1]
        detail = re.sub(r" ?[\"']?" + re.escape(str(body_path)) + r"[\"']?", "", detail)
        raise BadRequestError(f"body is not a valid Parquet file: {detail}") from None
