"""The DuckDB warehouse: its tables, the one-transaction merge of jobs, and the analysts' copy.

Only the applier (service/applier.py) opens the live file, and holds it for as long as it runs (DuckDB
allows one read-write process per file); its lanes merge the jobs of different organizations at once,
each in a transaction of its own cursor. Uniqueness of keys is kept by the merge rather than by PRIMARY
KEY indexes: one key join finds the rows a job replaces, they are deleted, and every incoming row is
appended. That is several times faster than MERGE or ON CONFLICT on an indexed table (see benchmarks/),
and the property tests in tests/service/test_merge_model.py check that no key is ever duplicated.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import duckdb
import polars as pl
import pyarrow.parquet as pq

from service.files import commit_file, temporary_path
from service.job import WAREHOUSE_COLUMNS, JobRecord, JobStatus, parse_iso
from service.settings import DuckDBConfig
from service.warehouse_comments import comment_statements
from transforms import Prepared

LAST_JOB = "last_job_id"
"""Lineage: the job that last wrote a row. A column of the incoming rows when jobs are applied together."""
ORGANIZATION = "organization_id"
"""A column of the incoming rows when jobs of several organizations are applied together; else `$org`."""
_POSITION = "__position"
"""An incoming row's place in its frame: what tells a matched row from a new one."""
CHECKPOINT_THRESHOLD = "1GB"
"""WAL size at which a commit checkpoints anyway: a bound on replay time, far above what one interval writes."""
STORAGE_VERSION = "v1.5.0"
"""The storage format of a new warehouse file: DuckDB 1.5 cannot read 2.0's own format."""
WAREHOUSE_LOCK = "warehouse.lock"
"""The flock, in the data directory, of the one process that holds the live warehouse."""

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
CREATE TABLE IF NOT EXISTS import_jobs ({", ".join(WAREHOUSE_COLUMNS.values())});
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


# Stub records for references an organization does not have yet: (table, key column, extra columns).
STUB_COLUMNS: dict[str, dict[str, str]] = {
    "products": {"external_id": "s.external_id", "name": "s.external_id"},
    "suppliers": {"external_id": "s.external_id"},
    "locations": {"location_id": "s.location_id", "code": "s.code"},
}
STUB_KEYS = {"products": "external_id", "suppliers": "external_id", "locations": "location_id"}

Incoming = pl.DataFrame | Path
"""Rows to merge: a frame, or a Parquet file that DuckDB reads itself (a large job's prepared part): no
copy of a million rows handed over from Python, and DuckDB's own scan (1M inventory rows: 0.30-0.32 s
and 189-216 MB against 0.36-0.45 s and 296-320 MB from the frame, measured)."""


@dataclass(frozen=True)
class StoredJob:
    """A large job's prepared parts as the Parquet files prepare wrote (service/prepare.py), merged as they are."""

    rows: Path
    lines: Path | None = None
    references: dict[str, Path] = field(default_factory=dict)


Merged = Prepared | StoredJob


def _connect(path: Path, config: DuckDBConfig) -> duckdb.DuckDBPyConnection:
    """A read-write connection that checkpoints only when told to (publish, close), never on COMMIT.

    DuckDB's automatic checkpoint fired on the commit of small jobs that update rows scattered over a
    large table and rewrote the row groups they touched: 0.7 s of a 1.0 s job at 10M rows. The WAL it
    leaves is replayed on the next open; publishing (at most once per interval) checkpoints it away.
    A new file is written in the storage format of DuckDB 1.5, which 1.5 and 2.x clients both read.
    """
    return duckdb.connect(
        str(path),
        config={
            **config,
            "checkpoint_threshold": CHECKPOINT_THRESHOLD,
            "storage_compatibility_version": STORAGE_VERSION,
        },
    )


def _has_schema(con: duckdb.DuckDBPyConnection, database: str) -> bool:
    """Every table exists already: skip the DDL."""
    (found,) = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' AND table_name IN ?",
        [database, list(TABLES)],
    ).fetchone() or (0,)
    return int(found) == len(TABLES)


class Warehouse:
    """The live warehouse file, held by this process alone (an flock beside it) for as long as it is open.

    One DuckDB database, and a cursor of it per lane: cursors of one database commit disjoint changes
    concurrently, which is how the jobs of different organizations are merged at once. Publishing
    checkpoints while lanes keep merging: a checkpoint writes what is committed, never what is not.
    """

    def __init__(self, data_dir: Path, path: Path, config: DuckDBConfig | None = None) -> None:
        self.data_dir = data_dir
        self.path = path
        self._config = config or {"threads": 2}
        self._lock: IO[str] | None = None
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._publishing = threading.Lock()
        self._opening = threading.Lock()

    def try_hold(self) -> bool:
        """Take the file for this process if no other process has it; True if this process has it now."""
        if self._lock is not None:
            return True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.data_dir / WAREHOUSE_LOCK, "a")  # noqa: SIM115 - kept open while held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._lock = handle
        return True

    @property
    def is_held(self) -> bool:
        return self._lock is not None

    publishes = True
    """The file is copied for analysts after commits (a lake is read live, and has no copy)."""

    @property
    def where(self) -> str:
        """What the warehouse is, for log lines and the readiness probe."""
        return str(self.path)

    def unreachable(self) -> str | None:
        """What keeps the warehouse from answering now, or None (a file always answers; a lake's catalog may not)."""
        return None

    def _database(self) -> duckdb.DuckDBPyConnection:
        with self._opening:
            if self._lock is None:
                raise RuntimeError("the warehouse is not held by this process")
            if self._connection is None:
                self._connection = self._open()
            return self._connection

    def _open(self) -> duckdb.DuckDBPyConnection:
        connection = _connect(self.path, self._config)
        if not _has_schema(connection, self.path.stem):  # DuckDB names a file's database by its stem
            connection.execute(SCHEMA)
        connection.execute(f"BEGIN; {'; '.join(comment_statements())}; COMMIT")
        return connection

    def _prepare_cursor(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """What every new cursor needs before its first statement (nothing, for the file)."""

    def exclusive(self, tables: Sequence[str]) -> contextlib.AbstractContextManager[None]:
        """Hold off other writers of these tables while a transaction writes them: nothing to do for the
        file, whose one process commits disjoint changes of its cursors at once."""
        return contextlib.nullcontext()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection of its own to the held database (temp tables and transactions are its own).

        DuckDB invalidates a database whose write failed (a full disk during a checkpoint, say): every
        later statement fails. The database is then closed, and the next cursor opens it again, which
        replays its WAL: what was committed is kept, and the caller retries what was not."""
        database = self._database()
        cursor = database.cursor()
        try:
            self._prepare_cursor(cursor)
            yield cursor
        except duckdb.FatalException:
            self._reopen_later(database)
            raise
        finally:
            cursor.close()

    def _reopen_later(self, database: duckdb.DuckDBPyConnection) -> None:
        with self._opening:
            if self._connection is database:
                self._connection = None
                with contextlib.suppress(duckdb.Error):
                    database.close()

    def publish(self, analytics_path: Path) -> None:
        """Checkpoint (the file then holds every commit), copy the file, and swap the copy in atomically.

        Readers holding the old copy keep their snapshot (the rename leaves their inode alone); new
        readers see the new one; nobody ever opens the live file, so imports never wait for them.
        """
        with self._publishing, self.cursor() as cursor:
            cursor.execute("CHECKPOINT")
            _copy_for_analysts(self.path, analytics_path)

    def release(self) -> None:
        """Close the database (its checkpoint) and let another process have the file."""
        try:
            if self._connection is not None:
                connection, self._connection = self._connection, None
                connection.close()
        finally:
            if self._lock is not None:
                lock, self._lock = self._lock, None
                lock.close()


def applied_at(con: duckdb.DuckDBPyConnection, job_ids: Sequence[str]) -> dict[str, datetime]:
    """When each of these jobs was committed, for those that were: the import_jobs row is part of the merge."""
    found = con.execute(
        "SELECT job_id, completed_at FROM import_jobs WHERE job_id IN (SELECT unnest($ids)) AND status = 'COMPLETED'",
        {"ids": list(job_ids)},
    ).fetchall()
    return {job_id: completed_at for job_id, completed_at in found}


def apply_jobs(
    con: duckdb.DuckDBPyConnection,
    tables: KindTables | None,
    jobs: Sequence[tuple[Merged, JobRecord]],
    failed: Sequence[JobRecord] = (),
    before_commit: Callable[[], None] | None = None,
) -> datetime:
    """Jobs of one kind, each organization's in the order given, and the import_jobs rows of failed jobs,
    as one transaction; returns the moment their rows were written (the completedAt of the merged jobs).

    The warehouse ends as if each job had been applied after the one before it of its organization (see
    combine_jobs); what a stream of small jobs gains is one scan of each large table and one set of
    statements for all of them, not one per job. A process killed before COMMIT leaves nothing of any
    of them behind (DuckDB logs a transaction to its WAL only when it commits); `before_commit` is the
    test hook that holds it open.
    """
    records = [record for _, record in jobs]
    organizations = {record.organization_id for record in records}
    kinds = {record.kind for record in records}
    if len(kinds) > 1 or (records and tables is None):
        raise ValueError(f"one transaction applies jobs of one kind, not {kinds}")
    now = datetime.now(UTC).replace(tzinfo=None)
    lineage: dict[str, object] = {"now": now}
    if len(organizations) == 1:  # the organization is one parameter, not a column of a million copies
        (lineage["org"],) = organizations
    con.execute("BEGIN TRANSACTION")
    try:
        if records and tables is not None:
            combined: Merged
            if len(jobs) == 1:  # the job's id is one parameter too
                combined, lineage["job"] = jobs[0][0], records[0].job_id
            else:
                combined = combine_jobs(tables, [(_in_memory(prepared), record) for prepared, record in jobs])
            for table, references in combined.references.items():
                _insert_stubs(con, table, references, lineage)
            _merge_rows(con, tables.rows, combined.rows, lineage)
            if tables.lines is not None and combined.lines is not None:
                _replace_lines(con, tables.rows, tables.lines, combined.rows, combined.lines, lineage)
        written = datetime.now(UTC).replace(tzinfo=None)
        outcomes = [(record, JobStatus.COMPLETED, written) for record in records]
        outcomes += [(record, JobStatus.FAILED, parse_iso(record.completed_at) or written) for record in failed]
        _record_jobs(con, outcomes)
        if before_commit is not None:
            before_commit()
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return written


def combine_jobs(tables: KindTables, jobs: Sequence[tuple[Prepared, JobRecord]]) -> Prepared:
    """What applying the jobs one after the other leaves, as one job whose rows carry `last_job_id`,
    and `organization_id` when the jobs are of several organizations (keys are then theirs).

    Each job's rows are unique by key already (last wins within a request, with warnings); across
    jobs the later one wins silently, as it would applied later. Lines are those of the winning
    header. A stub belongs to the first job that named it, as applied in order.
    """
    several = len({record.organization_id for _, record in jobs}) > 1
    owner = [ORGANIZATION] if several else []

    def tagged(frame: pl.DataFrame, record: JobRecord) -> pl.DataFrame:
        job = pl.lit(record.job_id, dtype=pl.String()).alias(LAST_JOB)
        return frame.with_columns(job, *[pl.lit(record.organization_id, dtype=pl.String()).alias(c) for c in owner])

    rows = pl.concat([tagged(prepared.rows, record) for prepared, record in jobs])
    rows = rows.unique(subset=[*owner, *tables.rows.key], keep="last", maintain_order=True)
    lines = None
    if tables.lines is not None:
        lines = pl.concat([tagged(p.lines, record) for p, record in jobs if p.lines is not None])
        winners = rows.select(*owner, *tables.rows.key, LAST_JOB)
        lines = lines.join(winners, on=[*owner, *tables.rows.key, LAST_JOB], how="semi", maintain_order="left")
    references: dict[str, pl.DataFrame] = {}
    for table in dict.fromkeys(table for prepared, _ in jobs for table in prepared.references):
        named = [tagged(p.references[table], record) for p, record in jobs if table in p.references]
        stubs = pl.concat(named)
        references[table] = stubs.unique(subset=[*owner, STUB_KEYS[table]], keep="first", maintain_order=True)
    return Prepared(rows=rows, lines=lines, references=references)


def count_changes(
    con: duckdb.DuckDBPyConnection, tables: KindTables, prepared: Prepared, organization_id: str
) -> tuple[int, int, int]:
    """What applying `prepared` now would do to its rows, writing nothing: (inserted, updated, unchanged).

    A row is unchanged when its key exists with the same values (a stub an import would make real is
    an update), and for orders and purchase orders, the same lines as well."""
    table = tables.rows
    columns = _column_types(con, table.name)
    values = [c for c in prepared.rows.columns if c not in table.key and c in columns]
    same = [f"t.{c} IS NOT DISTINCT FROM s.{c}::{columns[c]}" for c in values]
    if table.auto_created:
        same.append("NOT t.auto_created")
    joins = ""
    _register(con, "incoming_rows", prepared.rows)
    try:
        if tables.lines is not None and prepared.lines is not None:
            lines = tables.lines
            line_types = _column_types(con, lines.name)
            (order_key,) = table.key
            line_values = [c for c in prepared.lines.columns if c not in (order_key, "line_number") and c in line_types]
            same_line = " AND ".join(
                [f"t.{order_key} = s.{order_key}", "t.line_number = s.line_number"]
                + [f"t.{c} IS NOT DISTINCT FROM s.{c}::{line_types[c]}" for c in line_values]
            )
            _register(con, "incoming_lines", prepared.lines)
            # an order keeps its lines when it has as many as it is sent, each sent line matching one held
            con.execute(
                "CREATE OR REPLACE TEMP TABLE changed_orders AS"
                f" SELECT DISTINCT s.{order_key} FROM incoming_lines s ANTI JOIN {lines.name} t"
                f" ON t.organization_id = $org AND {same_line}"
                f" UNION SELECT {order_key} FROM (SELECT {order_key}, count(*) AS n FROM incoming_lines GROUP BY ALL) i"
                f" FULL JOIN (SELECT {order_key}, count(*) AS n FROM {lines.name} WHERE organization_id = $org"
                f" AND {order_key} IN (SELECT {order_key} FROM incoming_rows) GROUP BY ALL) h USING ({order_key})"
                " WHERE i.n IS DISTINCT FROM h.n",
                {"org": organization_id},
            )
            joins = f" LEFT JOIN changed_orders c ON c.{order_key} = s.{order_key}"
            same.append(f"c.{order_key} IS NULL")
        matched = f"t.{table.key[0]} IS NOT NULL"
        unchanged = " AND ".join(same) or "true"
        ((inserted, updated, kept),) = con.execute(
            f"SELECT count(*) FILTER (WHERE NOT ({matched})), count(*) FILTER (WHERE {matched} AND NOT ({unchanged})),"
            f" count(*) FILTER (WHERE {matched} AND {unchanged}) FROM incoming_rows s"
            f" LEFT JOIN {table.name} t ON t.organization_id = $org AND {_key_match(table.key)}{joins}",
            {"org": organization_id},
        ).fetchall()
    finally:
        con.unregister("incoming_rows")
        if tables.lines is not None and prepared.lines is not None:
            con.unregister("incoming_lines")
            con.execute("DROP TABLE IF EXISTS changed_orders")
    return int(inserted), int(updated), int(kept)


def _column_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns()"
        " WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ?",
        [table],
    ).fetchall()
    return {name: data_type for name, data_type in rows}


def _record_jobs(con: duckdb.DuckDBPyConnection, outcomes: Sequence[tuple[JobRecord, JobStatus, datetime]]) -> None:
    """The jobs' import_jobs rows, their columns taken from the record (service/job.py declares them)."""
    rows = []
    for record, status, completed_at in outcomes:
        row = {
            "job_id": record.job_id,
            "organization_id": record.organization_id,
            "kind": record.kind,
            "status": status.value,
            "row_count": record.row_count,
            "created_at": parse_iso(record.created_at),
            "processed_count": record.row_count if status is JobStatus.COMPLETED else 0,
            "failed_count": record.failed_count if status is JobStatus.COMPLETED else record.row_count,
            "started_at": parse_iso(record.started_at),
            "completed_at": completed_at,
        }
        rows.append([row[name] for name in WAREHOUSE_COLUMNS])
    # a FAILED job's row may be there from a run whose records were not saved (a COMPLETED one is never
    # merged again): only then is anything deleted, since inserts alone never conflict in a lake
    failed = {"ids": [record.job_id for record, status, _ in outcomes if status is JobStatus.FAILED]}
    if failed["ids"] and _any_rows(con, "import_jobs", " WHERE job_id IN (SELECT unnest($ids))", failed):
        con.execute("DELETE FROM import_jobs WHERE job_id IN (SELECT unnest($ids))", failed)
    columns = [definition.split()[0] for definition in WAREHOUSE_COLUMNS.values()]
    placeholders = "(" + ", ".join("?" for _ in columns) + ")"
    con.execute(
        f"INSERT INTO import_jobs ({', '.join(columns)}) VALUES {', '.join(placeholders for _ in rows)}",
        [value for row in rows for value in row],
    )


def _any_rows(con: duckdb.DuckDBPyConnection, relation: str, where: str = "", params: object = None) -> bool:
    return con.execute(f"SELECT 1 FROM {relation}{where} LIMIT 1", params).fetchone() is not None


def _key_match(key: tuple[str, ...]) -> str:
    return " AND ".join(f"t.{column} = s.{column}" for column in key)


def _in_memory(prepared: Merged) -> Prepared:
    """Jobs merged together are combined in memory: each must be (a large job is merged alone)."""
    if not isinstance(prepared, Prepared):
        raise ValueError("a job stored as files is merged alone")
    return prepared


def _columns(incoming: Incoming) -> list[str]:
    return incoming.columns if isinstance(incoming, pl.DataFrame) else pq.read_schema(incoming).names


def _job_columns(incoming: Incoming) -> tuple[list[str], list[str]]:
    """(column, value) to add to an insert for last_job_id: none if the rows carry it, else the one job's."""
    return ([], []) if LAST_JOB in _columns(incoming) else ([LAST_JOB], ["$job"])


def _owner(incoming: Incoming) -> str:
    """The incoming rows' organization: their column when they are of several, else the one parameter."""
    return f"s.{ORGANIZATION}" if ORGANIZATION in _columns(incoming) else "$org"


def _values(incoming: Incoming, key: Sequence[str] = ()) -> list[str]:
    """The columns that are inserted as they are (not the key, not the organization)."""
    return [c for c in _columns(incoming) if c not in key and c != ORGANIZATION]


def _register(con: duckdb.DuckDBPyConnection, name: str, incoming: Incoming, *, position: bool = False) -> None:
    """Let SQL read incoming rows as `name` (with `__position`, each row's place, if asked).

    A frame is handed over as Arrow with string views (DuckDB's own `register` of a Polars frame exports
    its strings as large_string, a copy of every one); a file becomes a view over DuckDB's Parquet reader."""
    if isinstance(incoming, pl.DataFrame):
        frame = incoming.with_row_index(_POSITION) if position else incoming
        con.register(name, frame.to_arrow(compat_level=pl.CompatLevel.newest()))
        return
    source = f"read_parquet('{_quoted(incoming)}'{', file_row_number = true' if position else ''})"
    select = f"* EXCLUDE (file_row_number), file_row_number AS {_POSITION}" if position else "*"
    con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {select} FROM {source}")


def _unregister(con: duckdb.DuckDBPyConnection, name: str, incoming: Incoming) -> None:
    if isinstance(incoming, pl.DataFrame):
        con.unregister(name)
    else:
        con.execute(f"DROP VIEW IF EXISTS {name}")


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def _execute(con: duckdb.DuckDBPyConnection, sql: str, lineage: dict[str, object]) -> None:
    """Run a statement with the lineage parameters it names (DuckDB refuses ones it does not)."""
    con.execute(sql, _parameters(sql, lineage))


def _parameters(sql: str, lineage: dict[str, object]) -> dict[str, object]:
    """The lineage parameters a statement names (DuckDB refuses ones it does not)."""
    return {name: value for name, value in lineage.items() if re.search(rf"\${name}\b", sql)}


def _insert_stubs(con: duckdb.DuckDBPyConnection, table: str, references: Incoming, lineage: dict[str, object]) -> None:
    columns = STUB_COLUMNS[table]
    key = STUB_KEYS[table]
    job = f"s.{LAST_JOB}" if LAST_JOB in _columns(references) else "$job"
    names, values = [*columns, LAST_JOB], [*columns.values(), job]
    owner = _owner(references)
    _register(con, "incoming_refs", references)
    try:
        _execute(
            con,
            f"INSERT INTO {table} (organization_id, {', '.join(names)}, auto_created, created_at, updated_at)"
            f" SELECT {owner}, {', '.join(values)}, true, $now, $now FROM incoming_refs s"
            f" WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.organization_id = {owner} AND t.{key} = s.{key})",
            lineage,
        )
    finally:
        _unregister(con, "incoming_refs", references)


def _merge_rows(con: duckdb.DuckDBPyConnection, table: Table, rows: Incoming, lineage: dict[str, object]) -> None:
    """Replace the rows whose key exists, insert the others.

    The key join against the table runs once, into a temp table of the rows that match (rowid, the
    incoming row's position, created_at); those rows are deleted and every incoming row appended,
    with the created_at of the row it replaces. Appending is DuckDB's fast path: an UPDATE of the same
    rows was slower and held its undo in memory (1.3 GB to update 5M rows of 10M), and the checkpoint
    vacuums what was deleted.
    """
    values = _values(rows, table.key)
    flag = ["auto_created"] if table.auto_created else []  # an imported row is real, even where a stub was
    job_column, job_value = _job_columns(rows)
    owner = _owner(rows)
    _register(con, "incoming_rows", rows, position=True)
    try:
        _execute(
            con,
            f"CREATE OR REPLACE TEMP TABLE matched_rows AS SELECT t.rowid AS __rid, s.{_POSITION}, t.created_at"
            f" FROM {table.name} t JOIN incoming_rows s ON t.organization_id = {owner} AND {_key_match(table.key)}",
            lineage,
        )
        if _any_rows(con, "matched_rows"):  # a DuckLake transaction that deletes nothing conflicts with nobody
            con.execute(f"DELETE FROM {table.name} WHERE rowid IN (SELECT __rid FROM matched_rows)")
        columns = [*table.key, *values]
        inserted = [f"s.{c}" for c in columns] + ["false" for _ in flag] + job_value
        _execute(
            con,
            f"INSERT INTO {table.name} (organization_id, {', '.join(columns + flag + job_column)}, created_at,"
            f" updated_at) SELECT {owner}, {', '.join(inserted)}, coalesce(m.created_at, $now), $now"
            f" FROM incoming_rows s LEFT JOIN matched_rows m ON m.{_POSITION} = s.{_POSITION}",
            lineage,
        )
        con.execute("DROP TABLE matched_rows")
    finally:
        _unregister(con, "incoming_rows", rows)


def _replace_lines(
    con: duckdb.DuckDBPyConnection,
    headers_table: Table,
    lines_table: Table,
    headers: Incoming,
    lines: Incoming,
    lineage: dict[str, object],
) -> None:
    """A re-imported order replaces all of its lines: delete the old ones, insert the new ones."""
    (order_key,) = headers_table.key
    _register(con, "incoming_rows", headers)
    _register(con, "incoming_lines", lines)
    try:
        if ORGANIZATION in _columns(headers):
            held = (
                f" WHERE rowid IN (SELECT t.rowid FROM {lines_table.name} t SEMI JOIN incoming_rows s"
                f" ON t.organization_id = s.{ORGANIZATION} AND t.{order_key} = s.{order_key})"
            )
        else:
            held = f" WHERE organization_id = $org AND {order_key} IN (SELECT {order_key} FROM incoming_rows)"
        if _any_rows(con, lines_table.name, held, _parameters(held, lineage)):
            _execute(con, f"DELETE FROM {lines_table.name}{held}", lineage)
        columns = _values(lines)
        job_column, job_value = _job_columns(lines)
        inserted = [f"s.{c}" for c in columns] + job_value
        _execute(
            con,
            f"INSERT INTO {lines_table.name} (organization_id, {', '.join(columns + job_column)}, created_at,"
            f" updated_at) SELECT {_owner(lines)}, {', '.join(inserted)}, $now, $now FROM incoming_lines s",
            lineage,
        )
    finally:
        _unregister(con, "incoming_rows", headers)
        _unregister(con, "incoming_lines", lines)


def publish_closed(data_dir: Path, warehouse_path: Path, analytics_path: Path) -> bool:
    """Publish the analysts' copy from a warehouse that no process holds; False if one does.

    A writer killed before its checkpoint leaves commits in the WAL: opening replays them, closing
    checkpoints them into the file, and the copy holds them.
    """
    warehouse = Warehouse(data_dir, warehouse_path)
    if not warehouse.try_hold():
        return False
    try:
        warehouse.publish(analytics_path)
    finally:
        warehouse.release()
    return True


def _copy_for_analysts(warehouse_path: Path, analytics_path: Path) -> None:
    """Copy the checkpointed file and rename it into place. A WAL beside the copy can only be what a
    session that opened it read-write left behind: it would break every reader, and the copy needs none."""
    tmp = temporary_path(analytics_path)
    shutil.copyfile(warehouse_path, tmp)
    os.chmod(tmp, 0o444)
    analytics_path.with_name(analytics_path.name + ".wal").unlink(missing_ok=True)
    commit_file(tmp, analytics_path)
