"""Writing the staged files: from `raw_rows` (a row per element, fields and lines as JSON text) or from
`records` (flat: a record per row, or per line of an order), to the rows (and lines) Parquet files."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from contracts.common import LINE, LINES_COUNT, ROW, ROW_TYPE, ROW_VALUE, Contract
from service.staging.sql import last_value, literal, quote

logger = logging.getLogger("stockyard.staging")


def select_staged(contract: Contract, *, tolerant: bool) -> str:
    """The staged rows, with `lines` reduced to what the contract checks (its count, or the bad value)."""
    columns = [ROW, ROW_TYPE, ROW_VALUE] + [f"{quote(f.name)}::VARCHAR AS {quote(f.name)}" for f in contract.fields]
    if contract.has_lines and tolerant:
        columns += [
            "CASE WHEN json_type(lines) = 'ARRAY' THEN NULL ELSE lines::VARCHAR END AS lines",
            f"CASE WHEN json_type(lines) = 'ARRAY' THEN json_array_length(lines) END AS {LINES_COUNT}",
        ]
    elif contract.has_lines:  # the fast reader only lets arrays of objects (or null) through
        columns += ["NULL::VARCHAR AS lines", f"len(lines)::UBIGINT AS {LINES_COUNT}"]
    return f"SELECT {', '.join(columns)} FROM raw_rows"


def select_lines(contract: Contract, *, tolerant: bool) -> str:
    if not tolerant:
        fields = [f"line.{quote(f.name)}::VARCHAR AS {quote(f.name)}" for f in contract.line_fields]
        lines = (
            f"SELECT {ROW}, unnest(range(len(lines))) AS {LINE}, unnest(lines) AS line"
            " FROM raw_rows WHERE len(lines) > 0"
        )
        return (
            f"SELECT {ROW}, {LINE}, 'OBJECT' AS {ROW_TYPE}, NULL::VARCHAR AS {ROW_VALUE}, {', '.join(fields)}"
            f" FROM ({lines})"
        )
    fields = [f"{last_value('__keys', '__values', f.name)}::VARCHAR AS {quote(f.name)}" for f in contract.line_fields]
    lines = (
        f"SELECT r.{ROW}, e.key::BIGINT AS {LINE}, e.type, e.value, json_keys(e.value) AS __keys,"
        " json_extract(e.value, '$.*') AS __values"
        " FROM raw_rows r, json_each(r.lines) e WHERE json_type(r.lines) = 'ARRAY'"
    )
    return (
        f"SELECT {ROW}, {LINE}, type AS {ROW_TYPE}, "
        f"CASE WHEN type <> 'OBJECT' THEN left(value::VARCHAR, 200) END AS {ROW_VALUE}, {', '.join(fields)} "
        f"FROM ({lines}) ORDER BY {ROW}, {LINE}"
    )


def copy_raw_rows(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    rows_tmp: Path,
    lines_tmp: Path | None,
    *,
    tolerant: bool,
    sort: bool = False,
) -> int:
    """Write `raw_rows` (one row per element, fields and lines as JSON text) as the staged file(s).

    Rows keep the order they were read in, unless `sort` (when they were not read in order)."""
    order = f" ORDER BY {ROW}" if sort else ""
    (row_count,) = con.execute(
        f"COPY ({select_staged(contract, tolerant=tolerant)}{order}) TO {literal(str(rows_tmp))} (FORMAT parquet)"
    ).fetchone() or (0,)
    if lines_tmp is not None:
        con.execute(f"COPY ({select_lines(contract, tolerant=tolerant)}) TO {literal(str(lines_tmp))} (FORMAT parquet)")
    return int(row_count)


def copy_records(con: duckdb.DuckDBPyConnection, contract: Contract, rows_tmp: Path, lines_tmp: Path | None) -> int:
    """Write `records` (flat: one per row, or per line of an order, `__key` its order's key) as the staged files.

    A line that could not be read still joins its order (found by its key), which is then rejected
    whole, as an order with a bad line is; the header fields of an order are those of its first record.
    """
    rows_path, fields = literal(str(rows_tmp)), [quote(f.name) for f in contract.fields]
    if not contract.has_lines or lines_tmp is None:
        (row_count,) = con.execute(
            f"COPY (SELECT __record AS {ROW}, {ROW_TYPE}, {ROW_VALUE}, {', '.join(fields)} FROM records"
            f" ORDER BY __record) TO {rows_path} (FORMAT parquet)"
        ).fetchone() or (0,)
        return int(row_count)
    has_line = " OR ".join(f"{quote(f.name)} IS NOT NULL" for f in contract.line_fields)
    con.execute(
        "CREATE TEMP TABLE keyed AS SELECT *, coalesce('k' || __key, 'r' || __record) AS __order,"
        f" ({ROW_TYPE} <> 'OBJECT' OR {has_line}) AS __is_line FROM records"  # a record with no line field: none
    )
    con.execute(
        f"CREATE TEMP TABLE orders AS SELECT row_number() OVER (ORDER BY __first) - 1 AS {ROW}, * FROM ("
        " SELECT __order, min(__record) AS __first,"
        f" min(__record) FILTER (WHERE {ROW_TYPE} = 'OBJECT') AS __header,"
        " count(*) FILTER (WHERE __is_line) AS __line_count FROM keyed GROUP BY __order)"
    )
    header_fields = ", ".join(f"h.{name}" for name in fields)
    (row_count,) = con.execute(
        f"COPY (SELECT o.{ROW}, CASE WHEN o.__header IS NULL THEN f.{ROW_TYPE} ELSE 'OBJECT' END AS {ROW_TYPE},"
        f" CASE WHEN o.__header IS NULL THEN f.{ROW_VALUE} END AS {ROW_VALUE}, {header_fields},"
        f" NULL::VARCHAR AS lines, CASE WHEN o.__header IS NOT NULL THEN o.__line_count END::UBIGINT AS {LINES_COUNT}"
        " FROM orders o JOIN keyed f ON f.__record = o.__first LEFT JOIN keyed h ON h.__record = o.__header"
        f" ORDER BY o.{ROW}) TO {rows_path} (FORMAT parquet)"
    ).fetchone() or (0,)
    line_fields = ", ".join(f"k.{quote(f.name)}" for f in contract.line_fields)
    con.execute(
        f"COPY (SELECT o.{ROW}, row_number() OVER (PARTITION BY o.{ROW} ORDER BY k.__record) - 1 AS {LINE},"
        f" k.{ROW_TYPE}, k.{ROW_VALUE}, {line_fields} FROM keyed k JOIN orders o USING (__order)"
        f" WHERE k.__is_line AND o.__header IS NOT NULL ORDER BY 1, 2) TO {literal(str(lines_tmp))} (FORMAT parquet)"
    )
    return int(row_count)
