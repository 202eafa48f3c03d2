"""Failed rows, ready to fix: a job's rejected rows rebuilt from its staged upload, in a format that
imports again, in input order, each with its row index and its error messages.

Every value comes back as it was sent (the staged JSON text), so a user fixes what is wrong, leaves the
rest, and POSTs the file back: the added columns (`_row`, `_line`, `_errors`, `_value`) are not fields
of any kind and are ignored on import. Only the kind's own fields come back: other keys that were sent
were never staged.

- JSON and NDJSON: one object per row, as the JSON API takes them (lines nested), with `_row` and
  `_errors` (a list of messages). JSON wraps them in the kind's array: `{"levels": [...]}`.
- CSV and Parquet: flat, one record per row; for purchase orders and orders one per line, the header
  fields repeated, with `_line` too. `_errors` holds the messages of the row and of that line (CSV:
  joined by "; ").
- A row or line that could not be read at all (not an object, not JSON, not CSV) has no fields: its
  text as sent is in `_value`.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from contracts.common import LINE, LINES_COUNT, ROW, ROW_TYPE, ROW_VALUE, Contract
from service.job_files import JobFiles
from service.settings import get_settings
from service.staging import UploadFormat
from service.staging.formats import ERRORS_COLUMN, FORMULA_PREFIX, LINE_COLUMN, QUOTE_MARK, ROW_COLUMN, VALUE_COLUMN

FILE_EXTENSIONS = {
    UploadFormat.JSON: ".json",
    UploadFormat.NDJSON: ".ndjson",
    UploadFormat.CSV: ".csv",
    UploadFormat.PARQUET: ".parquet",
}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _one_line(text: str) -> str:
    """JSON text on one line: a raw newline in valid JSON can only be whitespace between tokens."""
    return f"translate({text}, chr(10) || chr(13), '  ')"


def _object(members: list[tuple[str, str]]) -> str:
    """The text of a JSON object from (key, JSON text or NULL) pairs; a NULL member is left out."""
    parts = [
        f"CASE WHEN {value} IS NOT NULL THEN {_literal(json.dumps(key) + ':')} || {value} END" for key, value in members
    ]
    return "'{' || concat_ws(',', " + ", ".join(parts) + ") || '}'"


def _as_json(text: str) -> str:
    """A row or line that was not an object, as a JSON value: its text when that is JSON, else a string."""
    return f"CASE WHEN json_valid({text}) THEN {_one_line(text)} ELSE to_json({text})::VARCHAR END"


def _cell(text: str) -> str:
    """A staged value as a CSV cell: a string without its quotes, null as empty, anything else as sent."""
    return (
        f"CASE WHEN json_type({text}) = 'VARCHAR' THEN json_extract_string({text}, '$')"
        f" WHEN json_type({text}) <> 'NULL' THEN trim({_one_line(text)}) END"
    )


def _load(con: duckdb.DuckDBPyConnection, contract: Contract, files: JobFiles) -> None:
    """`failed` (the staged rows that have errors), `failed_lines` (their lines) and `messages`
    (`__row`, `__line` or NULL for the row itself, `__messages` in the order the status lists them)."""
    if files.errors.exists():
        con.execute(
            "CREATE TEMP TABLE errors AS SELECT row AS __row, field, message, file_row_number AS __position"
            f" FROM read_parquet({_literal(str(files.errors))}, file_row_number=true) WHERE row IS NOT NULL"
        )
    else:  # a job without errors has no errors file
        con.execute("CREATE TEMP TABLE errors (__row BIGINT, field VARCHAR, message VARCHAR, __position BIGINT)")
    rows, lines = files.rows_as_sent()
    con.execute(
        f"CREATE TEMP TABLE failed AS SELECT * FROM read_parquet({_literal(str(rows))})"
        f" WHERE {ROW} IN (SELECT __row FROM errors)"
    )
    if contract.has_lines:
        con.execute(
            f"CREATE TEMP TABLE failed_lines AS SELECT * FROM read_parquet({_literal(str(lines))})"
            f" WHERE {ROW} IN (SELECT __row FROM errors)"
        )
    con.execute(
        "CREATE TEMP TABLE messages AS SELECT __row,"
        r" TRY_CAST(regexp_extract(field, '^lines\[(\d+)\]', 1) AS BIGINT) AS __line,"
        " list(message ORDER BY __position) AS __messages FROM errors GROUP BY ALL"
    )


def _documents(contract: Contract) -> str:
    """One row of text per failed row: the JSON object, ordered by `__row`."""
    members = [(f.name, _one_line(f"r.{_quote(f.name)}")) for f in contract.fields]
    joins = ""
    if contract.has_lines:
        line_object = _object([(f.name, _one_line(_quote(f.name))) for f in contract.line_fields])
        line_text = f"CASE WHEN {ROW_TYPE} = 'OBJECT' THEN {line_object} ELSE {_as_json(ROW_VALUE)} END"
        joins = (
            f" LEFT JOIN (SELECT {ROW}, '[' || string_agg({line_text}, ',' ORDER BY {LINE}) || ']' AS __lines"
            f" FROM failed_lines GROUP BY {ROW}) l USING ({ROW})"
        )
        lines = (
            f"CASE WHEN r.lines IS NOT NULL THEN {_one_line('r.lines')}"
            f" WHEN r.{LINES_COUNT} = 0 THEN '[]' WHEN r.{LINES_COUNT} > 0 THEN l.__lines END"
        )
        members.append(("lines", lines))
    row_messages = f"(SELECT to_json(list(message ORDER BY __position))::VARCHAR FROM errors e WHERE e.__row = r.{ROW})"
    extra = [(ROW_COLUMN, f"r.{ROW}::VARCHAR"), (ERRORS_COLUMN, row_messages)]
    readable = _object(members + extra)
    unreadable = _object([*extra, (VALUE_COLUMN, _as_json(f"r.{ROW_VALUE}"))])
    return (
        f"SELECT r.{ROW}, CASE WHEN r.{ROW_TYPE} = 'OBJECT' THEN {readable} ELSE {unreadable} END AS __text"
        f" FROM failed r{joins}"
    )


def _records(contract: Contract, upload_format: UploadFormat) -> str:
    """The flat records: one per failed row, or per line of a failed order (one when it has no lines)."""
    cells = [
        f"CASE WHEN r.{ROW_TYPE} = 'OBJECT' THEN {_cell(f'r.{_quote(f.name)}')} END AS {_quote(f.name)}"
        for f in contract.fields
    ]
    line_cells: list[str] = []
    joins, line, value = "", "NULL::BIGINT", f"CASE WHEN r.{ROW_TYPE} <> 'OBJECT' THEN r.{ROW_VALUE} END"
    if contract.has_lines:
        line_cells = [
            f"CASE WHEN l.{ROW_TYPE} = 'OBJECT' THEN {_cell(f'l.{_quote(f.name)}')} END AS {_quote(f.name)}"
            for f in contract.line_fields
        ]
        joins = f" LEFT JOIN failed_lines l ON l.{ROW} = r.{ROW}"
        line = f"l.{LINE}"
        value = (
            f"CASE WHEN r.{ROW_TYPE} <> 'OBJECT' THEN r.{ROW_VALUE} WHEN l.{ROW_TYPE} <> 'OBJECT' THEN l.{ROW_VALUE}"
            " ELSE r.lines END"  # `lines` is staged only when it was not an array
        )
    # the messages of the row itself, then those of this line
    messages = (
        f"(SELECT flatten(list(__messages ORDER BY __line NULLS FIRST)) FROM messages m WHERE m.__row = r.{ROW}"
        f" AND (m.__line IS NULL OR m.__line = {line} OR {line} IS NULL))"
    )
    messages = f"coalesce({messages}, []::VARCHAR[])"
    if upload_format is UploadFormat.CSV:
        messages = f"array_to_string({messages}, '; ')"
    extra = [f"r.{ROW} AS {ROW_COLUMN}"]
    if contract.has_lines:
        extra.append(f"{line} AS {LINE_COLUMN}")
    extra += [f"{messages} AS {ERRORS_COLUMN}", f"{value} AS {VALUE_COLUMN}"]
    columns = cells + line_cells + extra
    if upload_format is UploadFormat.CSV:  # no cell a spreadsheet would run as a formula
        columns = [_defused(column) for column in columns]
    return f"SELECT {', '.join(columns)} FROM failed r{joins} ORDER BY r.{ROW}, {line} NULLS FIRST"


def _defused(column: str) -> str:
    """`expression AS name`, with a quote mark before a text a spreadsheet would take for a formula (CSV
    staging takes one off again: service/staging/formats.py, FORMULA_PREFIX)."""
    expression, _, name = column.rpartition(" AS ")
    text = f"({expression})::VARCHAR"
    quoted = _literal(QUOTE_MARK) + f" || {text}"
    return f"CASE WHEN regexp_matches({text}, {_literal(FORMULA_PREFIX)}) THEN {quoted} ELSE {text} END AS {name}"


def write_failed_rows(contract: Contract, files: JobFiles, upload_format: UploadFormat, target: Path) -> bytes:
    """Write the failed rows of a job to `target`; return what must be sent after it (JSON's closing).

    For JSON, what is sent before it is `json_prefix(contract)`: the rows are written as lines, so
    that the file is never built in memory.
    """
    config = get_settings().duckdb_config(preserve_insertion_order=True)
    with duckdb.connect(config=config) as con:
        _load(con, contract, files)
        output = _literal(str(target))
        if upload_format in (UploadFormat.JSON, UploadFormat.NDJSON):
            text = "__text"
            if upload_format is UploadFormat.JSON:  # a comma before every object but the first
                text = f"CASE WHEN row_number() OVER (ORDER BY {ROW}) > 1 THEN ',' ELSE '' END || __text"
            # one column of JSON text, written as it is: no quote character, and no JSON text holds \x02
            con.execute(
                f"COPY (SELECT {text} FROM ({_documents(contract)}) ORDER BY {ROW}) TO {output}"
                " (FORMAT csv, header false, quote '', escape '', delim '\x02')"
            )
            return b"]}\n" if upload_format is UploadFormat.JSON else b""
        options = "FORMAT csv, header true" if upload_format is UploadFormat.CSV else "FORMAT parquet"
        con.execute(f"COPY ({_records(contract, upload_format)}) TO {output} ({options})")
    return b""


def json_prefix(contract: Contract) -> bytes:
    return f"{{{json.dumps(contract.array_key)}: [\n".encode()
