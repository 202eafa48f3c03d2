"""The SQL peers: what a user writes by hand in DuckDB for the same body, no validation, no errors, no stubs.

Both read the body with `read_json`, keep the rows whose key is there (the last of each key), and
upsert them into a warehouse that holds the previous batch:

- `MERGE INTO` a table with a PRIMARY KEY on the contract's key;
- `DELETE` the rows whose key is in the batch, then `INSERT` the batch, into a table without an index.

Orders and purchase orders replace the lines of every order sent (DELETE + INSERT of the unnested lines)
in both. Timed from the read of the body to the close of the database (its checkpoint), as the floor is.
The table's column types are those DuckDB infers from the body itself, so the previous batch (loaded
untimed, with TRY_CAST) never fails on a bad row's type.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from benchmarks.generators import ARRAY_KEYS
from benchmarks.measure import Stopwatch
from service.kinds import KINDS

MERGE = "SQL MERGE INTO"
DELETE_INSERT = "SQL DELETE+INSERT"
KEY_DEFAULTS = {"channel": "'ALL'"}
"""A key field that may be left out gets its contract default, as a key column may not be null."""


@dataclass(frozen=True)
class SqlPeer:
    name: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _source(path: Path, size: int, array_key: str) -> str:
    return (
        f"(SELECT unnest({array_key}, max_depth := 2) FROM read_json('{path}',"
        f" maximum_object_size = {max(size + 1, 1 << 24)}))"
    )


def _key(kind: str) -> list[str]:
    return [f'"{name}"' for name in KINDS[kind].contract.key]


def _keyed(kind: str, relation: str) -> str:
    """The rows of `relation` with their whole key, the last of each key, key defaults filled in."""
    key = KINDS[kind].contract.key
    filled = ", ".join(f'coalesce("{k}", {KEY_DEFAULTS[k]}) AS "{k}"' for k in key if k in KEY_DEFAULTS)
    replace = f" REPLACE ({filled})" if filled else ""
    present = " AND ".join(f'"{k}" IS NOT NULL' for k in key if k not in KEY_DEFAULTS) or "true"
    return (
        f"SELECT * EXCLUDE (__n) FROM (SELECT *{replace}, row_number() OVER () AS __n FROM {relation})"
        f" WHERE {present} QUALIFY __n = max(__n) OVER (PARTITION BY {', '.join(_key(kind))})"
    )


def run_sql_peer(name: str, kind: str, body: Path, previous: Path, rows: int, directory: Path) -> SqlPeer:
    """One peer on `body`, into a warehouse that holds `previous` (loaded untimed)."""
    directory.mkdir(parents=True, exist_ok=True)
    array_key = ARRAY_KEYS[kind]
    has_lines = KINDS[kind].contract.has_lines
    key = ", ".join(_key(kind))
    con = duckdb.connect(str(directory / "peer.duckdb"))
    source = _source(body, body.stat().st_size, array_key)
    con.execute(f"CREATE TEMP VIEW incoming AS {_keyed(kind, source)}")
    exclude = " EXCLUDE (lines)" if has_lines else ""
    con.execute(f"CREATE TABLE t AS SELECT *{exclude} FROM incoming LIMIT 0")
    if name == MERGE:
        con.execute(f"ALTER TABLE t ADD PRIMARY KEY ({key})")
    types = con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 't'").fetchall()
    casts = ", ".join(f'TRY_CAST("{column}" AS {data_type}) AS "{column}"' for column, data_type in types)
    old = _keyed(kind, _source(previous, previous.stat().st_size, array_key))
    present = " AND ".join(f"{k} IS NOT NULL" for k in _key(kind))
    con.execute(f"INSERT INTO t SELECT * FROM (SELECT {casts} FROM ({old})) WHERE {present}")
    if has_lines:
        (order_key,) = _key(kind)
        con.execute(f"CREATE TABLE t_lines AS SELECT {order_key}, unnest(lines, max_depth := 2) FROM incoming LIMIT 0")
        line_types = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 't_lines'"
        ).fetchall()
        line_casts = ", ".join(f'TRY_CAST("{column}" AS {data_type})' for column, data_type in line_types)
        con.execute(
            f"INSERT INTO t_lines SELECT {line_casts} FROM (SELECT {order_key}, unnest(lines, max_depth := 2)"
            f" FROM ({old}))"
        )
    con.execute("CHECKPOINT")
    clock = Stopwatch()
    with clock.stage("upsert"):
        con.execute("BEGIN")
        con.execute("CREATE TEMP TABLE batch AS SELECT * FROM incoming")
        columns = [f'"{column}"' for column, _ in types]
        if name == MERGE:
            updates = ", ".join(f"{c} = s.{c}" for c in columns if c not in _key(kind))
            on = " AND ".join(f"t.{k} = s.{k}" for k in _key(kind))
            matched = f" WHEN MATCHED THEN UPDATE SET {updates}" if updates else ""  # orders: a key, nothing else
            con.execute(
                f"MERGE INTO t USING (SELECT {', '.join(columns)} FROM batch) s ON {on}{matched}"
                " WHEN NOT MATCHED THEN INSERT *"
            )
        else:
            matched = " AND ".join(f"t.{k} = s.{k}" for k in _key(kind))
            con.execute(f"DELETE FROM t USING batch s WHERE {matched}")
            con.execute(f"INSERT INTO t SELECT {', '.join(columns)} FROM batch")
        if has_lines:
            (order_key,) = _key(kind)
            con.execute(f"DELETE FROM t_lines WHERE {order_key} IN (SELECT {order_key} FROM batch)")
            con.execute(f"INSERT INTO t_lines SELECT {order_key}, unnest(lines, max_depth := 2) FROM batch")
        con.execute("COMMIT")
        con.close()
    shutil.rmtree(directory)
    return SqlPeer(name, rows, clock.seconds["upsert"])
