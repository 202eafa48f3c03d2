"""Staging CSV: a header line with the wire field names, then one record per row; `__row` is the 0-based
record after the header. Purchase orders and orders come one record per line, header fields repeated
and grouped by the key: a row's index is the order of its key's first record, its lines its records."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import duckdb

from contracts.common import ROW_TYPE, ROW_VALUE, Contract
from service.errors import BadRequestError
from service.staging.formats import ERRORS_COLUMN, FORMULA_PREFIX, INVALID_CSV, MAX_COLUMNS, QUOTE_MARK
from service.staging.records import line_reader, read_records
from service.staging.rows import copy_records
from service.staging.sql import key_text, literal, quote

logger = logging.getLogger("stockyard.staging")

_MAX_HEADER_BYTES = 1 << 20

_CSV_DELIMITERS = (",", ";", "\t", "|")
"""Comma; or, when the header names no field with commas, what spreadsheets in other locales export."""


def csv_header(body_path: Path, contract: Contract) -> tuple[list[str], str]:
    """The field names of the header line, and the delimiter that makes them name known fields."""
    wanted = [f.name for f in (*contract.fields, *contract.line_fields)]
    with open(body_path, "rb") as handle:
        first = handle.readline(_MAX_HEADER_BYTES + 1)
    if not first.strip():
        raise BadRequestError(f"empty body: expected a CSV header line naming the fields ({', '.join(wanted)})")
    if len(first) > _MAX_HEADER_BYTES:
        raise BadRequestError(f"the CSV header line is longer than {_MAX_HEADER_BYTES} bytes")
    try:
        text = first.decode("utf-8").rstrip("\n")
    except UnicodeDecodeError:
        raise BadRequestError("the CSV header line is not valid UTF-8") from None
    for delimiter in _CSV_DELIMITERS:
        header = [name.strip() for name in next(csv.reader([text], delimiter=delimiter))]
        if set(header) & set(wanted):
            if len(header) > MAX_COLUMNS:
                raise BadRequestError(f"the CSV header has {len(header):,} columns; at most {MAX_COLUMNS:,} are read")
            return header, delimiter
    raise BadRequestError(
        f"the CSV header line names none of the fields of {contract.kind}: expected {', '.join(wanted)}"
    )


def _formula_kept(cell: str) -> str:
    """A cell without the quote mark that failed rows put before a formula-like text (formats.FORMULA_PREFIX)."""
    exported = literal(FORMULA_PREFIX.replace(QUOTE_MARK + "*", QUOTE_MARK + "+", 1))
    return f"CASE WHEN regexp_matches({cell}, {exported}) THEN {cell}[2:] ELSE {cell} END"


def _csv_cell(text: str, index: int, delimiter: str) -> str:
    """The `index`-th cell of a CSV record's text (unquoted), or '' when the record does not read that far.

    Only for records the reader refused, to find the order a refused line belongs to.
    """
    separator = re.escape(delimiter)
    cell = f'(?:"(?:[^"]|"")*"|[^"{separator}\\n][^{separator}\\n]*|)'
    pattern = f"^(?:{cell}{separator}){{{index}}}({cell})(?:{separator}|\\n|$)"
    raw = f"regexp_extract({text}, {literal(pattern)}, 1)"
    return f"CASE WHEN starts_with({raw}, '\"') THEN replace({raw}[2:-2], '\"\"', '\"') ELSE {raw} END"


def stage_csv(
    con: duckdb.DuckDBPyConnection, contract: Contract, body_path: Path, rows_tmp: Path, lines_tmp: Path | None
) -> int:
    header, delimiter = csv_header(body_path, contract)
    # a failed-rows file of ours (it has the errors column) comes back: take off the quote marks it added
    cell = _formula_kept if ERRORS_COLUMN in header else str
    position = {name: index for index, name in enumerate(header) if name}  # a repeated name: the last wins
    reader = line_reader(body_path, [f"c{i}" for i in range(len(header))], header=True, delimiter=delimiter, quote='"')
    numbered = read_records(con, reader, first_line=2)
    wanted = [*contract.fields, *contract.line_fields]
    cells = [
        (f"to_json({cell(f'c{position[f.name]}')})::VARCHAR" if f.name in position else "NULL::VARCHAR")
        + f" AS {quote(f.name)}"
        for f in wanted
    ]
    nulls = [f"NULL::VARCHAR AS {quote(f.name)}" for f in wanted]
    key, refused_key = "NULL::VARCHAR", "NULL::VARCHAR"
    if contract.has_lines and contract.key[0] in position:
        key = key_text(f"c{position[contract.key[0]]}")
        refused_key = key_text(_csv_cell("__text", position[contract.key[0]], delimiter))
    con.execute(
        f"CREATE TEMP TABLE records AS SELECT __record, 'OBJECT' AS {ROW_TYPE}, NULL::VARCHAR AS {ROW_VALUE},"
        f" {key} AS __key, {', '.join(cells)} FROM ({numbered})"
        f" UNION ALL SELECT __record, '{INVALID_CSV}', __text, {refused_key}, {', '.join(nulls)} FROM rejected"
    )
    return copy_records(con, contract, rows_tmp, lines_tmp)
