"""The DuckDB warehouse: its tables, the one-transaction merge of a job, and the analysts' copy.

Only the worker opens the live file, and only under an exclusive lock (DuckDB allows one read-write
process per file). Uniqueness of keys is kept by this single writer rather than by PRIMARY KEY
indexes: one key join finds the rows a job replaces, they are deleted, and every incoming row is
appended. That is several times faster than MERGE or ON CONFLICT on an indexed table (see
benchmarks/), and the property tests in tests/service/test_merge_model.py check that no key is ever
duplicated.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from service.staging import fsync_and_rename
from transforms import Prepared

LAST_JOB = "last_job_id"
"""Lineage: the job that last wrote a row. A column of the incoming rows when jobs are applied together."""
_POSITION = "__position"
"""An incoming row's place in its frame: what tells a matched row from a new one."""
CHECKPOINT_THRESHOLD = "1GB"
"""WAL size at which a commit checkpoints anyway: a bound on replay time, far above what one interval writes."""

LINEAGE = "created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL, last_job_id VARCHAR NOT NULL"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS products (
    organization_id VARCHAR NOT NULL, external_id VARCHAR NOT NULL, name VARCHAR,
    auto_created BOOLEAN NOT NULL, {LINEAGE});
CREATE TABLE IF NOT EXISTS suppliers (
    organization_id VARCHAR NOT NULL, external_id VARCHAR NOT NULL, auto_created BOOLEAN NOT NULL, {LINEAGE});
CREATE TABLE IF NOT EXISTS locations (
    organization_id VARCHAR NOT NULL, location_id VARCHAR NOT NULL, code VARCHAR NOT NULL,
    auto_created BOOLEAN NOT NULL, {LINEAGE});
CREATE TABLE IF NOT EXISTS inventory_levels (
    organization_id VARCHAR NOT NULL, sku_id VARCHAR NOT NULL, location_id VARCHAR NOT NULL,
    quantity_on_hand DOUBLE NOT NULL, quantity_reserved DOUBLE NOT NULL, min_quantity DOUBLE NOT NULL,
    quantity_available DOUBLE NOT NULL, {LINEAGE});
CREATE TABLE IF NOT EXISTS purchase_orders (
    organization_id VARCHAR NOT NULL, external_po_number VARCHAR NOT NULL, supplier_id VARCHAR NOT NULL,
    destination_location_id VARCHAR NOT NULL, status VARCHAR NOT NULL, {LINEAGE});
CREATE TABLE IF NOT EXISTS purchase_order_lines (
    organization_id VARCHAR NOT NULL, external_po_number VARCHAR NOT NULL, line_number INTEGER NOT NULL,
    sku_id VARCHAR NOT NULL, quantity DOUBLE NOT NULL, unit_cost DECIMAL(18, 4) NOT NULL, {LINEAGE});
CREATE TABLE IF NOT EXISTS orders (
    organization_id VARCHAR NOT NULL, external_order_id VARCHAR NOT NULL, {LINEAGE});
CREATE TABLE IF NOT EXISTS order_lines (
    organization_id VARCHAR NOT NULL, external_order_id VARCHAR NOT NULL, line_number INTEGER NOT NULL,
    sku_id VARCHAR NOT NULL, quantity DOUBLE NOT NULL, location_id VARCHAR NOT NULL, {LINEAGE});
CREATE TABLE IF NOT EXISTS demand_history (
    organization_id VARCHAR NOT NULL, sku_id VARCHAR NOT NULL, location_id VARCHAR NOT NULL,
    week_starting DATE NOT NULL, channel VARCHAR NOT NULL, actual_demand DOUBLE NOT NULL,
    forecasted_demand DOUBLE NOT NULL, {LINEAGE});
CREATE TABLE IF NOT EXISTS import_jobs (
    job_id VARCHAR NOT NULL, organization_id VARCHAR NOT NULL, type VARCHAR NOT NULL, status VARCHAR NOT NULL,
    row_count BIGINT NOT NULL, processed_count BIGINT NOT NULL, failed_count BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL, started_at TIMESTAMP, completed_at TIMESTAMP);
"""


TABLES: tuple[str, ...] = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA))
"""Every table of the warehouse, import_jobs last."""


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    auto_created: bool = False  # imported rows are real: they clear a stub's auto_created flag


@dataclass(frozen=True)
class KindTables:
    rows: Table
    lines: Table | None = None


KIND_TABLES: dict[str, KindTables] = {
    "catalog": KindTables(Table("products", ("external_id",), auto_created=True)),
    "suppliers": KindTables(Table("suppliers", ("external_id",), auto_created=True)),
    "inventory": KindTables(Table("inventory_levels", ("sku_id", "location_id"))),
    "purchase-orders": KindTables(
        Table("purchase_orders", ("external_po_number",)),
        Table("purchase_order_lines", ("external_po_number", "line_number")),
    ),
    "orders": KindTables(
        Table("orders", ("external_order_id",)),
        Table("order_lines", ("external_order_id", "line_number")),
    ),
    "demand-history": KindTables(Table("demand_history", ("sku_id", "location_id", "week_starting", "channel"))),
}

# Stub records for references an organization does not have yet: (table, key column, extra columns).
STUB_COLUMNS: dict[str, dict[str, str]] = {
    "products": {"external_id": "s.external_id", "name": "s.external_id"},
    "suppliers": {"external_id": "s.external_id"},
    "locations": {"location_id": "s.location_id", "code": "s.code"},
}
STUB_KEYS = {"products": "external_id", "suppliers": "external_id", "locations": "location_id"}


@dataclass(frozen=True)
class JobOutcome:
    """The import_jobs row of a job (naive UTC times). A completed_at of None given to apply_jobs is the
    moment the job's rows are written, just before COMMIT."""

    job_id: str
    organization_id: str
    kind: str
    status: str
    row_count: int
    processed_count: int
    failed_count: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


@contextmanager
def writer_lock(data_dir: Path) -> Iterator[None]:
    """Exclusive use of the live warehouse file, across processes."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "warehouse.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def open_warehouse(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The live warehouse, read-write, with its tables created. Hold writer_lock around it."""
    con = _connect(path)
    try:
        if not _has_schema(con):
            con.execute(SCHEMA)
        yield con
    finally:
        con.close()


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-write connection that checkpoints only when told to (publish, close), never on COMMIT.

    DuckDB's automatic checkpoint fired on the commit of small jobs that update rows scattered over a
    large table and rewrote the row groups they touched: 0.7 s of a 1.0 s job at 10M rows. The WAL it
    leaves is replayed on the next open; publishing (at most once per interval) checkpoints it away.
    """
    return duckdb.connect(str(path), config={"threads": 2, "checkpoint_threshold": CHECKPOINT_THRESHOLD})


def _has_schema(con: duckdb.DuckDBPyConnection) -> bool:
    """Every table exists already: skip the DDL, which costs tens of milliseconds per job."""
    (found,) = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name IN ?", [list(TABLES)]
    ).fetchone() or (0,)
    return int(found) == len(TABLES)


def applied_at(con: duckdb.DuckDBPyConnection, job_ids: Sequence[str]) -> dict[str, datetime]:
    """When each of these jobs was committed, for those that were: the import_jobs row is part of the merge."""
    found = con.execute(
        "SELECT job_id, completed_at FROM import_jobs WHERE job_id IN (SELECT unnest($ids)) AND status = 'COMPLETED'",
        {"ids": list(job_ids)},
    ).fetchall()
    return {job_id: completed_at for job_id, completed_at in found}


def apply_job(
    con: duckdb.DuckDBPyConnection,
    prepared: Prepared,
    outcome: JobOutcome,
    now: datetime,
    before_commit: Callable[[], None] | None = None,
) -> datetime:
    """One job's stubs, merge-upsert, replaced lines and import_jobs row: one transaction."""
    return apply_jobs(con, [(prepared, outcome)], now, before_commit)


def apply_jobs(
    con: duckdb.DuckDBPyConnection,
    jobs: Sequence[tuple[Prepared, JobOutcome]],
    now: datetime,
    before_commit: Callable[[], None] | None = None,
) -> datetime:
    """Consecutive jobs of one organization and kind, in the order given, as one transaction; returns
    the moment their rows were written (the completed_at of each outcome that has none).

    The warehouse ends as if each job had been applied after the one before it (see combine_jobs);
    what a stream of small jobs gains is one scan of each large table for all of them, not one per
    job. A process killed before COMMIT leaves nothing of any of them behind (DuckDB logs a
    transaction to its WAL only when it commits); `before_commit` is the test hook that holds it open.
    """
    outcomes = [outcome for _, outcome in jobs]
    kinds = {(outcome.organization_id, outcome.kind) for outcome in outcomes}
    if len(kinds) != 1:
        raise ValueError(f"one transaction applies jobs of one organization and kind, not {sorted(kinds)}")
    ((organization_id, kind),) = kinds
    tables = KIND_TABLES[kind]
    lineage: dict[str, object] = {"org": organization_id, "now": now}
    if len(jobs) == 1:  # the job's id is one parameter, not a column of a million copies
        combined, lineage["job"] = jobs[0][0], outcomes[0].job_id
    else:
        combined = combine_jobs(tables, [(prepared, outcome.job_id) for prepared, outcome in jobs])
    con.execute("BEGIN TRANSACTION")
    try:
        for table, references in combined.references.items():
            _insert_stubs(con, table, references, lineage)
        _merge_rows(con, tables.rows, combined.rows, lineage)
        if tables.lines is not None and combined.lines is not None:
            _replace_lines(con, tables.rows, tables.lines, combined.rows, combined.lines, lineage)
        written = datetime.now(UTC).replace(tzinfo=None)
        for outcome in outcomes:
            _record_outcome(con, outcome if outcome.completed_at else replace(outcome, completed_at=written))
        if before_commit is not None:
            before_commit()
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return written


def combine_jobs(tables: KindTables, jobs: Sequence[tuple[Prepared, str]]) -> Prepared:
    """What applying the jobs one after the other leaves, as one job whose rows carry `last_job_id`.

    Each job's rows are unique by key already (last wins within a request, with warnings); across
    jobs the later one wins silently, as it would applied later. Lines are those of the winning
    header. A stub belongs to the first job that named it, as applied in order.
    """

    def tagged(frame: pl.DataFrame, job_id: str) -> pl.DataFrame:
        return frame.with_columns(pl.lit(job_id, dtype=pl.String()).alias(LAST_JOB))

    rows = pl.concat([tagged(prepared.rows, job_id) for prepared, job_id in jobs])
    rows = rows.unique(subset=list(tables.rows.key), keep="last", maintain_order=True)
    lines = None
    if tables.lines is not None:
        lines = pl.concat([tagged(p.lines, job_id) for p, job_id in jobs if p.lines is not None])
        winners = rows.select(*tables.rows.key, LAST_JOB)
        lines = lines.join(winners, on=[*tables.rows.key, LAST_JOB], how="semi", maintain_order="left")
    references: dict[str, pl.DataFrame] = {}
    for table in dict.fromkeys(table for prepared, _ in jobs for table in prepared.references):
        named = [tagged(p.references[table], job_id) for p, job_id in jobs if table in p.references]
        references[table] = pl.concat(named).unique(subset=STUB_KEYS[table], keep="first", maintain_order=True)
    return Prepared(rows=rows, lines=lines, references=references)


def record_failure(con: duckdb.DuckDBPyConnection, outcome: JobOutcome) -> None:
    con.execute("BEGIN TRANSACTION")
    _record_outcome(con, outcome)
    con.execute("COMMIT")


def _record_outcome(con: duckdb.DuckDBPyConnection, outcome: JobOutcome) -> None:
    con.execute("DELETE FROM import_jobs WHERE job_id = ?", [outcome.job_id])
    con.execute(
        "INSERT INTO import_jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            outcome.job_id,
            outcome.organization_id,
            outcome.kind,
            outcome.status,
            outcome.row_count,
            outcome.processed_count,
            outcome.failed_count,
            outcome.created_at,
            outcome.started_at,
            outcome.completed_at,
        ],
    )


def _key_match(key: tuple[str, ...]) -> str:
    return " AND ".join(f"t.{column} = s.{column}" for column in key)


def _job_columns(frame: pl.DataFrame) -> tuple[list[str], list[str]]:
    """(column, value) to add to an insert for last_job_id: none if the rows carry it, else the one job's."""
    return ([], []) if LAST_JOB in frame.columns else ([LAST_JOB], ["$job"])


def _register(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    """Let SQL read a frame as it is: DuckDB's own `register` of a Polars frame exports its strings as
    Arrow large_string, a copy of every one (hundreds of MB for a large job); string views are read as
    they are."""
    con.register(name, frame.to_arrow(compat_level=pl.CompatLevel.newest()))


def _execute(con: duckdb.DuckDBPyConnection, sql: str, lineage: dict[str, object]) -> None:
    """Run a statement with the lineage parameters it names (DuckDB refuses ones it does not)."""
    con.execute(sql, {name: value for name, value in lineage.items() if f"${name}" in sql})


def _insert_stubs(
    con: duckdb.DuckDBPyConnection, table: str, references: pl.DataFrame, lineage: dict[str, object]
) -> None:
    columns = STUB_COLUMNS[table]
    key = STUB_KEYS[table]
    job = f"s.{LAST_JOB}" if LAST_JOB in references.columns else "$job"
    names, values = [*columns, LAST_JOB], [*columns.values(), job]
    _register(con, "incoming_refs", references)
    try:
        _execute(
            con,
            f"INSERT INTO {table} (organization_id, {', '.join(names)}, auto_created, created_at, updated_at)"
            f" SELECT $org, {', '.join(values)}, true, $now, $now FROM incoming_refs s"
            f" WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.organization_id = $org AND t.{key} = s.{key})",
            lineage,
        )
    finally:
        con.unregister("incoming_refs")


def _merge_rows(con: duckdb.DuckDBPyConnection, table: Table, rows: pl.DataFrame, lineage: dict[str, object]) -> None:
    """Replace the rows whose key exists, insert the others.

    The key join against the table runs once, into a temp table of the rows that match (rowid, the
    incoming row's position, created_at); those rows are deleted and every incoming row appended,
    with the created_at of the row it replaces. Appending is DuckDB's fast path: an UPDATE of the same
    rows was slower and held its undo in memory (1.3 GB to update 5M rows of 10M), and the checkpoint
    vacuums what was deleted.
    """
    values = [c for c in rows.columns if c not in table.key]
    flag = ["auto_created"] if table.auto_created else []  # an imported row is real, even where a stub was
    job_column, job_value = _job_columns(rows)
    _register(con, "incoming_rows", rows.with_row_index(_POSITION))
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE matched_rows AS SELECT t.rowid AS __rid, s.{_POSITION}, t.created_at"
            f" FROM {table.name} t JOIN incoming_rows s ON t.organization_id = $org AND {_key_match(table.key)}",
            {"org": lineage["org"]},
        )
        con.execute(f"DELETE FROM {table.name} WHERE rowid IN (SELECT __rid FROM matched_rows)")
        columns = [*table.key, *values]
        inserted = [f"s.{c}" for c in columns] + ["false" for _ in flag] + job_value
        _execute(
            con,
            f"INSERT INTO {table.name} (organization_id, {', '.join(columns + flag + job_column)}, created_at,"
            f" updated_at) SELECT $org, {', '.join(inserted)}, coalesce(m.created_at, $now), $now"
            f" FROM incoming_rows s LEFT JOIN matched_rows m ON m.{_POSITION} = s.{_POSITION}",
            lineage,
        )
        con.execute("DROP TABLE matched_rows")
    finally:
        con.unregister("incoming_rows")


def _replace_lines(
    con: duckdb.DuckDBPyConnection,
    headers_table: Table,
    lines_table: Table,
    headers: pl.DataFrame,
    lines: pl.DataFrame,
    lineage: dict[str, object],
) -> None:
    """A re-imported order replaces all of its lines: delete the old ones, insert the new ones."""
    (order_key,) = headers_table.key
    _register(con, "incoming_rows", headers)
    _register(con, "incoming_lines", lines)
    try:
        con.execute(
            f"DELETE FROM {lines_table.name} WHERE organization_id = $org"
            f" AND {order_key} IN (SELECT {order_key} FROM incoming_rows)",
            {"org": lineage["org"]},
        )
        columns = list(lines.columns)
        job_column, job_value = _job_columns(lines)
        inserted = [f"s.{c}" for c in columns] + job_value
        _execute(
            con,
            f"INSERT INTO {lines_table.name} (organization_id, {', '.join(columns + job_column)}, created_at,"
            f" updated_at) SELECT $org, {', '.join(inserted)}, $now, $now FROM incoming_lines s",
            lineage,
        )
    finally:
        con.unregister("incoming_rows")
        con.unregister("incoming_lines")


class Writer:
    """The worker's read-write connection to the live warehouse, kept open from one job to the next.

    Opening and closing (closing checkpoints) cost about 60 ms a job, which a stream of small jobs
    cannot afford; DuckDB is built for one long-lived writer anyway. The worker closes it after a large
    job only, to hand back the memory its merge used. Use it with writer_lock held.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: duckdb.DuckDBPyConnection | None = None

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._connection is None:
            connection = _connect(self.path)
            if not _has_schema(connection):
                connection.execute(SCHEMA)
            self._connection = connection
        try:
            yield self._connection
        except BaseException:
            self.close()  # whatever went wrong, the next job starts from a fresh connection
            raise

    @property
    def is_open(self) -> bool:
        return self._connection is not None

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()

    def publish(self, analytics_path: Path) -> None:
        """Checkpoint the open connection (so the file holds every commit), then copy the file."""
        if self._connection is None:
            publish(self.path, analytics_path)
            return
        self._connection.execute("CHECKPOINT")
        _copy_for_analysts(self.path, analytics_path)


_writers: dict[Path, Writer] = {}


def writer(path: Path) -> Writer:
    """This process's writer for the warehouse at `path`."""
    return _writers.setdefault(path, Writer(path))


def close_writers() -> None:
    """Close every writer of this process (worker shutdown, tests)."""
    for each in _writers.values():
        each.close()
    _writers.clear()


def publish(warehouse_path: Path, analytics_path: Path) -> None:
    """Copy the closed, checkpointed warehouse to the analysts' file and swap it in atomically.

    Readers holding the old copy keep their snapshot (the rename leaves their inode alone); new
    readers see the new one; nobody ever opens the live file, so imports never wait for them.
    Call with writer_lock held and no connection to the live file open (else: Writer.publish).
    """
    wal = warehouse_path.with_name(warehouse_path.name + ".wal")
    if not warehouse_path.exists() or wal.exists():
        # a writer killed before its checkpoint leaves commits in the WAL: opening replays, closing checkpoints
        with open_warehouse(warehouse_path):
            pass
    _copy_for_analysts(warehouse_path, analytics_path)


def _copy_for_analysts(warehouse_path: Path, analytics_path: Path) -> None:
    tmp = analytics_path.with_name(analytics_path.name + ".tmp")
    shutil.copyfile(warehouse_path, tmp)
    os.chmod(tmp, 0o444)
    fsync_and_rename(tmp, analytics_path)
