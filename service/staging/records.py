"""Reading NDJSON lines and CSV records with DuckDB's CSV reader, strictly: a line it cannot read is a
row error of its own, numbered as it stands in the body."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from service.staging.sql import literal

logger = logging.getLogger("stockyard.staging")

MAX_LINE_BYTES = 64 << 20
"""The longest NDJSON line or CSV record read (longer is a row error): DuckDB's buffers grow with it."""


def line_reader(body: Path, columns: list[str], *, header: bool, delimiter: str, quote: str) -> str:
    """DuckDB's CSV reader, strict: a record it cannot read goes to its `reject_errors` table, never fails
    the read. The body's line endings are "\\n" already (BodyDecoder)."""
    size = body.stat().st_size
    names = ", ".join(f"{literal(name)}: 'VARCHAR'" for name in columns)
    return (
        f"read_csv({literal(str(body))}, header={str(header).lower()}, columns={{{names}}},"
        f" delim={literal(delimiter)}, quote={literal(quote)}, escape={literal(quote)}, comment='',"
        " new_line='\\n', auto_detect=false, strict_mode=true, store_rejects=true,"
        f" max_line_size={min(max(size, 2 << 20), MAX_LINE_BYTES)})"
    )


def read_records(con: duckdb.DuckDBPyConnection, reader: str, first_line: int) -> str:
    """Read every record into `parsed`, and what the reader refused into `rejected` (`__record`, `__text`);
    return a query of `parsed` with `__record`: each record's 0-based index among all of them, refused
    ones included. DuckDB numbers only the records it took, and the refused ones by their line (which
    counts a quoted newline as none, as a record is counted): the k-th record taken is record k plus
    the number refused before it."""
    con.execute(f"CREATE TEMP TABLE parsed AS SELECT ordinality - 1 AS __k, * FROM {reader} WITH ORDINALITY")
    con.execute(
        f"CREATE TEMP TABLE rejected AS SELECT (line - {first_line})::BIGINT AS __record, any_value(csv_line) AS __text"
        " FROM reject_errors GROUP BY line"
    )
    (refused,) = con.execute("SELECT count(*) FROM rejected").fetchone() or (0,)
    if not refused:
        return "SELECT __k AS __record, * FROM parsed"
    # refused record j (1-based, in order) has __record - (j - 1) taken records before it
    before = (
        "SELECT __record - (row_number() OVER (ORDER BY __record) - 1) AS __from,"
        " row_number() OVER (ORDER BY __record) AS __before FROM rejected"
    )
    shifts = f"SELECT __from, max(__before) AS __before FROM ({before}) GROUP BY __from"
    return (
        "SELECT (p.__k + coalesce(s.__before, 0))::BIGINT AS __record, p.* "
        f"FROM parsed p ASOF LEFT JOIN ({shifts}) s ON p.__k >= s.__from"
    )
