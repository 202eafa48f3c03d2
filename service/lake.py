"""The DuckLake warehouse: its catalog on PostgreSQL, its data as Parquet files under a shared path.

The same tables, merge and lineage as the DuckDB file (service/warehouse.py runs the same SQL on it),
for warehouses that outgrow one machine: appliers on any number of machines write one lake, and
analysts attach it read-only and see each commit at once, with time travel to any kept snapshot. Each
data directory has one applier (the flock beside it), as for the file; appliers of several machines
merge different organizations at once, and writers of one table take turns (service/table_locks.py),
because DuckLake fails a commit that deletes from a table another transaction wrote meanwhile.

The data path is a directory every applier sees (a shared file system), or an S3 URL (httpfs, with the
credentials of service/settings.py's S3Access). DuckLake writes a commit's files before the catalog row
that makes them part of the lake, so a writer killed in between leaves files nothing uses, never a
half commit: maintenance deletes such orphans once they are old enough that no writer can still be
committing them.

DuckLake and its PostgreSQL scanner load from their wheels (`pip install 'stockyard[lake]'`), never by
INSTALL over a network; they exist for DuckDB 1.5.5 only, hence the lake's own environment.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import duckdb

from service.errors import StockyardError
from service.logs import redacted
from service.settings import OBJECT_STORE_SCHEMES, DuckDBConfig, S3Access, Settings
from service.table_locks import TableLocks
from service.warehouse import SCHEMA, TABLES, Warehouse, _has_schema
from service.warehouse_comments import comment_statements

if TYPE_CHECKING:
    from service.applier import Applier

LAKE = "lake"
"""The name the lake is attached as, in the writers' DuckDB and in the analysts' guide."""
EXTENSIONS = {"postgres_scanner": "duckdb_extension_postgres_scanner", "ducklake": "duckdb_extension_ducklake"}
"""Each extension the lake needs, and the wheel's module that carries it."""
OBJECT_STORE_EXTENSIONS = {"httpfs": "duckdb_extension_httpfs", "aws": "duckdb_extension_aws"}
"""What a data path on an object store needs besides."""
ORPHAN_AGE = timedelta(days=1)
"""A data file no snapshot names is deleted once it is this old: younger, a writer may still be committing it."""
MAINTENANCE_LOCK = "stockyard:lake:maintenance"
"""Taken (with a TTL) by the applier that maintains the lake this interval: one machine at a time does."""
QUIET_SECONDS = 2.0
"""Maintenance waits until no job has been applied for this long (or one interval has gone by waiting)."""

logger = logging.getLogger("stockyard.lake")


def extension_path(name: str) -> Path:
    """The extension file its wheel installed, for this DuckDB version; a clear error when it is missing."""
    missing = StockyardError(
        f"the DuckLake warehouse needs the {name} extension for DuckDB {duckdb.__version__}: install the lake"
        " environment (`pip install 'stockyard[lake]'`, DuckDB 1.5.5 with its ducklake and postgres wheels)"
    )
    try:
        module = importlib.import_module({**EXTENSIONS, **OBJECT_STORE_EXTENSIONS}[name])
    except ImportError:
        raise missing from None
    found = Path(module.__file__ or "").parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not found.exists():
        raise missing
    return found


def load_extensions(con: duckdb.DuckDBPyConnection, s3: S3Access | None = None) -> None:
    """Load the lake's extensions; with `s3`, httpfs too and a secret that reaches the bucket."""
    for name in [*EXTENSIONS, *(OBJECT_STORE_EXTENSIONS if s3 is not None else ())]:
        con.execute(f"LOAD '{extension_path(name)}'")
    if s3 is not None:
        con.execute(s3_secret_sql(s3))


def is_object_store(location: str) -> bool:
    return location.startswith(OBJECT_STORE_SCHEMES)


def s3_secret_sql(s3: S3Access) -> str:
    """DuckDB's secret for the S3 data path (session-scoped: nothing is written to disk): the keys given,
    or without them AWS's credential chain (profile files, SSO, an instance's or a pod's role)."""
    if s3.key_id:
        options = {"PROVIDER": "config", "KEY_ID": s3.key_id, "SECRET": s3.secret, "REGION": s3.region}
        if s3.session_token:
            options["SESSION_TOKEN"] = s3.session_token
    else:
        options = {"PROVIDER": "credential_chain", "REGION": s3.region}
    if s3.endpoint:
        address = urlsplit(s3.endpoint if "://" in s3.endpoint else f"https://{s3.endpoint}")
        options["ENDPOINT"] = address.netloc
        options["USE_SSL"] = "true" if address.scheme == "https" else "false"
    options["URL_STYLE"] = s3.url_style or ("path" if s3.endpoint else "vhost")
    listed = ", ".join(
        f"{name} {value}" if name == "PROVIDER" else f"{name} '{_quoted(value)}'" for name, value in options.items()
    )
    return f"CREATE OR REPLACE SECRET stockyard_lake_s3 (TYPE s3, {listed})"


def attach_sql(catalog: str, data_path: str | None = None, *, read_only: bool = False) -> str:
    """ATTACH of the lake as `lake`: writers give the data path (it is stored in the catalog on the first
    attach), readers need not."""
    options = [f"DATA_PATH '{_quoted(data_path.rstrip('/') + '/')}'"] if data_path is not None else []
    if read_only:
        options.append("READ_ONLY")
    suffix = f" ({', '.join(options)})" if options else ""
    return f"ATTACH 'ducklake:postgres:{_quoted(catalog)}' AS {LAKE}{suffix}"


CATALOG_PROBE_TIMEOUT = 5
"""Seconds `/ready` waits for the catalog's PostgreSQL to answer."""


def catalog_problem(catalog: str) -> str | None:
    """What keeps the lake's catalog from answering (for `/ready`), or None when it answers a query."""
    try:
        with duckdb.connect() as con:
            con.execute(f"LOAD '{extension_path('postgres_scanner')}'")
            address = f"{catalog} connect_timeout={CATALOG_PROBE_TIMEOUT}"
            con.execute(f"ATTACH '{_quoted(address)}' AS catalog (TYPE postgres, READ_ONLY)")
            con.execute("SELECT * FROM postgres_query('catalog', 'SELECT 1')").fetchall()
    except (duckdb.Error, StockyardError) as error:
        return redacted(str(error).splitlines()[0])
    return None


def _quoted(text: str) -> str:
    return text.replace("'", "''")


class Lake(Warehouse):
    """The lake, attached in an in-memory DuckDB of this process; a cursor per lane, each its own transaction."""

    publishes = False

    def unreachable(self) -> str | None:
        """Whether the catalog answers now: DuckDB reports a catalog lost mid-statement in errors of any class
        (a Binder Error, an INTERNAL Error), so a job's failure is first checked against it."""
        return catalog_problem(self.catalog)

    def __init__(
        self,
        data_dir: Path,
        catalog: str,
        data_path: str | Path,
        config: DuckDBConfig | None = None,
        locks: TableLocks | None = None,
        s3: S3Access | None = None,
    ) -> None:
        super().__init__(data_dir, data_dir, config)  # no file of its own: `where` and `_open` say what it is
        self.catalog = catalog
        self.data_path = str(data_path)
        self.s3 = (s3 or S3Access()) if is_object_store(self.data_path) else None
        self.locks = locks
        self._local = threading.Lock()  # without Redis (one process, tests): turns within this process

    @property
    def where(self) -> str:
        return f"the DuckLake with its data in {self.data_path}"

    def _open(self) -> duckdb.DuckDBPyConnection:
        if self.s3 is None:
            Path(self.data_path).mkdir(parents=True, exist_ok=True)
        connection = duckdb.connect(config={**self._config, "allow_unsigned_extensions": "false"})
        try:
            load_extensions(connection, self.s3)
            connection.execute(attach_sql(self.catalog, self.data_path))
            connection.execute(f"USE {LAKE}")
            if not _has_schema(connection, LAKE) or comment_statements(_comments(connection)):
                with self.exclusive(TABLES):  # the first appliers of a new lake would conflict making it
                    if not _has_schema(connection, LAKE):
                        connection.execute(f"BEGIN; {SCHEMA}; COMMIT")
                    statements = comment_statements(_comments(connection))
                    if statements:  # each one is a change of the catalog: only those that differ
                        connection.execute(f"BEGIN; {'; '.join(statements)}; COMMIT")
        except BaseException:
            connection.close()
            raise
        return connection

    def _prepare_cursor(self, cursor: duckdb.DuckDBPyConnection) -> None:
        cursor.execute(f"USE {LAKE}")

    @contextlib.contextmanager
    def exclusive(self, tables: Sequence[str]) -> Iterator[None]:
        """Wait for the turn of these tables among every writer of the lake (see service/table_locks.py)."""
        if self.locks is None:
            with self._local:
                yield
            return
        with self.locks.held(tables):
            yield

    def publish(self, analytics_path: Path) -> None:
        raise RuntimeError("a lake is read live: there is no copy to publish")

    def maintain(self, snapshot_days: float, orphan_age: timedelta = ORPHAN_AGE) -> dict[str, int]:
        """Compact small files and rewrite files mostly deleted, expire snapshots older than `snapshot_days`,
        delete the files nothing uses any more and the orphans of killed writers older than `orphan_age`.

        Each table is compacted in its turn among the writers (a compaction conflicts with their deletes);
        returns how many data files the lake had before and after, and the orphans deleted, for the log."""
        with self.cursor() as con:
            before = _data_files(con)
            for table in TABLES:
                with self.exclusive([table]):
                    try:
                        con.execute(f"CALL ducklake_flush_inlined_data('{LAKE}', table_name => '{table}')")
                        con.execute(f"CALL ducklake_rewrite_data_files('{LAKE}', '{table}')")
                        con.execute(f"CALL ducklake_merge_adjacent_files('{LAKE}', '{table}')")
                    except duckdb.TransactionException as error:  # import_jobs gains rows without a turn
                        logger.info("compacting %s conflicted with a commit (%s); next time", table, error)
            now = datetime.now(UTC)
            con.execute(
                f"CALL ducklake_expire_snapshots('{LAKE}', older_than => ?)", [now - timedelta(days=snapshot_days)]
            )
            con.execute(f"CALL ducklake_cleanup_old_files('{LAKE}', cleanup_all => true)")
            orphans = con.execute(
                f"SELECT count(*) FROM ducklake_delete_orphaned_files('{LAKE}', older_than => ?)", [now - orphan_age]
            ).fetchone() or (0,)
            return {"files_before": before, "files_after": _data_files(con), "orphans_deleted": int(orphans[0])}


def _data_files(con: duckdb.DuckDBPyConnection) -> int:
    (count,) = con.execute(
        f"SELECT count(*) FROM __ducklake_metadata_{LAKE}.ducklake_data_file WHERE end_snapshot IS NULL"
    ).fetchone() or (0,)
    return int(count)


def _comments(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str | None], str | None]:
    held: dict[tuple[str, str | None], str | None] = {}
    for table, comment in con.execute(
        "SELECT table_name, comment FROM duckdb_tables() WHERE database_name = ?", [LAKE]
    ).fetchall():
        held[(table, None)] = comment
    for table, column, comment in con.execute(
        "SELECT table_name, column_name, comment FROM duckdb_columns() WHERE database_name = ?", [LAKE]
    ).fetchall():
        held[(table, column)] = comment
    return held


def run_maintenance(applier: Applier, lake: Lake) -> None:
    """The applier's maintenance thread: once per interval, when the lanes are quiet, maintain the lake,
    unless another machine's applier is doing it this interval."""
    settings = applier.settings
    interval = settings.lake_maintenance_interval_seconds
    while not applier.stopping.wait(interval):
        waited = 0.0
        while time.monotonic() - applier.last_apply < QUIET_SECONDS and waited < interval:
            if applier.stopping.wait(QUIET_SECONDS):
                return
            waited += QUIET_SECONDS
        try:
            if not applier.store.redis.set(MAINTENANCE_LOCK, os.getpid(), nx=True, ex=max(1, int(interval * 0.9))):
                continue
            started = time.monotonic()
            files = lake.maintain(settings.lake_snapshot_days)
            logger.info(
                "lake maintained in %.1f s: %d data files before, %d after, %d orphaned files deleted",
                time.monotonic() - started, files["files_before"], files["files_after"], files["orphans_deleted"],
            )  # fmt: skip
        except Exception:
            logger.warning("lake maintenance failed; trying again next interval", exc_info=True)


def open_warehouse(settings: Settings, locks: TableLocks | None = None) -> Warehouse:
    """The warehouse the settings choose: the DuckDB file (default) or the lake."""
    if not settings.is_lake:
        return Warehouse(settings.data_dir, settings.warehouse_path, settings.duckdb_config())
    return Lake(
        settings.data_dir,
        settings.effective_lake_catalog,
        settings.lake_data_location,
        settings.duckdb_config(),
        locks,
        settings.lake_s3,
    )
