"""Settings in one place: flags, then STOCKYARD_* environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DEFAULT_MAX_BODY_BYTES = 1 << 30
DuckDBConfig = dict[str, str | int | float | list[str]]


def _env(name: str, default: str) -> str:
    return os.environ.get(f"STOCKYARD_{name}", default)


def _optional_path(name: str) -> Path | None:
    value = _env(name, "")
    return Path(value).resolve() if value else None


OBJECT_STORE_SCHEMES = ("s3://",)
"""Data paths on an object store rather than a file system: S3, or any store that speaks its API."""


def _optional_location(name: str) -> str | None:
    """A path (made absolute) or an object store's URL, as given."""
    value = _env(name, "")
    if not value or value.startswith(OBJECT_STORE_SCHEMES):
        return value or None
    if "://" in value:
        raise ValueError(f"STOCKYARD_{name} must be a path or an s3:// URL, not {value!r}")
    return str(Path(value).resolve())


@dataclass(frozen=True)
class S3Access:
    """How the lake reaches an S3 data path: AWS's own environment variables, which operators already set
    for their other tools; without a key, AWS's credential chain (profile files, SSO, an instance's or a
    pod's role). An endpoint names an S3-compatible store (MinIO, R2, a local test server)."""

    key_id: str = field(default_factory=lambda: os.environ.get("AWS_ACCESS_KEY_ID", ""))
    secret: str = field(default_factory=lambda: os.environ.get("AWS_SECRET_ACCESS_KEY", ""), repr=False)
    session_token: str = field(default_factory=lambda: os.environ.get("AWS_SESSION_TOKEN", ""), repr=False)
    region: str = field(
        default_factory=lambda: os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    )
    endpoint: str = field(
        default_factory=lambda: os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    )
    """`http(s)://host:port` of an S3-compatible store; empty for AWS itself."""
    url_style: str = field(default_factory=lambda: _env("LAKE_S3_URL_STYLE", ""))
    """`path` or `vhost`; by default `path` with an endpoint (most compatible stores want it), else `vhost`."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(_env("DATA_DIR", "./data")).resolve())
    """Holds everything: keys, staging, the warehouse and its analysts' copy, the embedded Redis."""
    redis_url: str | None = field(default_factory=lambda: os.environ.get("REDIS_URL") or None)
    """An external Redis; unset means the embedded one under the data directory."""
    host: str = field(default_factory=lambda: _env("HOST", "127.0.0.1"))
    """Address the API listens on."""
    port: int = field(default_factory=lambda: int(_env("PORT", "8000")))
    """Port the API listens on."""
    max_body_bytes: int = field(default_factory=lambda: int(_env("MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES))))
    """Largest accepted request body; larger ones get 413 without being read whole."""
    body_idle_timeout_seconds: float = field(default_factory=lambda: float(_env("BODY_IDLE_TIMEOUT", "30")))
    """An upload whose body sends nothing for this long is answered 408 and dropped."""
    header_timeout_seconds: float = field(default_factory=lambda: float(_env("HEADER_TIMEOUT", "10")))
    """A connection that has not sent a whole request head within this long is closed."""
    max_concurrent_uploads: int = field(default_factory=lambda: int(_env("MAX_CONCURRENT_UPLOADS", "64")))
    """Uploads being received at once by one API process; beyond, 503 with Retry-After."""
    publish_interval_seconds: float = field(default_factory=lambda: float(_env("PUBLISH_INTERVAL", "2")))
    """Least time between two copies of the warehouse for analysts while jobs keep coming."""
    job_timeout_seconds: int = field(default_factory=lambda: int(_env("JOB_TIMEOUT", "7200")))
    """How long one import may run before the worker gives up on it (RQ's default is 180 s)."""
    queue_name: str = field(default_factory=lambda: _env("QUEUE", "stockyard"))
    """The prefix of the RQ queues: `{name}-prepare`, `{name}-prepare-large` and `{name}-apply`."""
    workers: int = field(default_factory=lambda: int(_env("WORKERS", "2")))
    """How many workers `serve` runs: each prepares jobs, and one of them applies them."""
    apply: bool = field(default_factory=lambda: _env("APPLY", "auto").lower() not in ("never", "false", "0", "no"))
    """Whether a worker may become the applier (`auto`); `never` for workers on machines that must not
    open the warehouse file."""
    apply_lanes: int = field(default_factory=lambda: int(_env("APPLY_LANES", "8")))
    """How many organizations the applier merges at once (one lane each)."""
    group_max_rows: int = field(default_factory=lambda: int(_env("GROUP_MAX_ROWS", "50000")))
    """A job of at most this many rows is small: it is prepared and applied together with the small jobs
    queued beside it, up to this many rows in all."""
    group_max_jobs: int = field(default_factory=lambda: int(_env("GROUP_MAX_JOBS", "100")))
    """The most small jobs prepared or applied together."""
    validation_chunk_rows: int = field(default_factory=lambda: int(_env("VALIDATION_CHUNK_ROWS", "250000")))
    """A large job is validated at most this many rows at a time: its progress grows, and small jobs waiting
    to be prepared are prepared between two chunks."""
    validation_chunk_bytes: int = field(default_factory=lambda: int(_env("VALIDATION_CHUNK_BYTES", str(24 << 20))))
    """...and fewer rows when they are long, so that a chunk holds about this many bytes of their text (the
    JSON of a body kept as sent, the staged rows in memory otherwise): the memory a chunk takes while it is
    read and validated grows with its text, not with its row count."""
    prepare_rows_in_flight: int = field(default_factory=lambda: int(_env("PREPARE_ROWS_IN_FLIGHT", "20000000")))
    """The most rows of large jobs being prepared at once, by all workers together (memory grows with
    them); a large job waits until it fits, or runs alone when it is larger than this."""
    duckdb_memory_limit: str = field(default_factory=lambda: _env("DUCKDB_MEMORY_LIMIT", "2GB"))
    """The most memory one DuckDB database of a process may use (DuckDB's own default is 80% of RAM)."""
    duckdb_threads: int = field(default_factory=lambda: int(_env("DUCKDB_THREADS", "2")))
    """Threads of each DuckDB database of a process."""
    retention_days: float = field(default_factory=lambda: float(_env("RETENTION_DAYS", "30")))
    """How long a finished job's files (upload, errors, failed rows, record) and its idempotency keys are kept."""
    retention_interval_seconds: float = field(default_factory=lambda: float(_env("RETENTION_INTERVAL", "3600")))
    """How often a worker purges what is past retention."""
    webhook_allowed_networks: tuple[str, ...] = field(
        default_factory=lambda: tuple(n for n in _env("WEBHOOK_ALLOWED_NETWORKS", "").split(",") if n.strip())
    )
    """Networks (CIDR, comma-separated) webhooks may be sent to although they are not public (say 10.0.0.0/8)."""
    webhook_timeout_seconds: float = field(default_factory=lambda: float(_env("WEBHOOK_TIMEOUT", "10")))
    """How long one webhook attempt may take before it counts as failed."""
    webhook_retry_base_seconds: float = field(default_factory=lambda: float(_env("WEBHOOK_RETRY_BASE", "30")))
    """The wait after a webhook's first failed attempt; it doubles with each next one, for up to a day."""
    max_attempts: int = field(default_factory=lambda: int(_env("MAX_ATTEMPTS", "3")))
    """A job whose preparation killed its worker this many times fails, with the reason."""
    recovery_interval_seconds: float = field(default_factory=lambda: float(_env("RECOVERY_INTERVAL", "10")))
    """How often an idle worker looks for accepted jobs that Redis lost or whose worker died."""
    shutdown_timeout_seconds: float = field(default_factory=lambda: float(_env("SHUTDOWN_TIMEOUT", "60")))
    """How long `serve` lets the API and a running job finish on Ctrl-C/SIGTERM before killing them."""
    log_format: str = field(default_factory=lambda: _env("LOG_FORMAT", "text").lower())
    """`text` (one readable line per event) or `json` (one JSON object per line, for a log pipeline)."""
    log_level: str = field(default_factory=lambda: _env("LOG_LEVEL", "INFO").upper())
    """The least severe log lines written: DEBUG, INFO, WARNING or ERROR."""

    warehouse: str = field(default_factory=lambda: _env("WAREHOUSE", "file").lower())
    """`file` (one DuckDB file under the data directory, the default) or `ducklake` (a DuckLake: its
    catalog on PostgreSQL, its data as Parquet under STOCKYARD_LAKE_DATA_PATH; for many machines)."""
    lake_catalog: str | None = field(default_factory=lambda: _env("LAKE_CATALOG", "") or None)
    """The DuckLake catalog's PostgreSQL, as a libpq connection string (`host=db1 dbname=lake user=...`);
    unset, `serve` starts an embedded PostgreSQL under the data directory."""
    lake_data_path: str | None = field(default_factory=lambda: _optional_location("LAKE_DATA_PATH"))
    """Where the lake's Parquet files live (default: `lake` in the data directory): a path that every machine
    applying jobs sees the same, or an S3 URL (`s3://bucket/prefix/`, credentials from AWS_*)."""
    lake_s3: S3Access = field(default_factory=S3Access)
    """The credentials and endpoint of an S3 data path."""
    lake_snapshot_days: float = field(default_factory=lambda: float(_env("LAKE_SNAPSHOT_DAYS", "7")))
    """How long the lake keeps old snapshots (time travel reaches back this far); older ones expire."""
    lake_maintenance_interval_seconds: float = field(
        default_factory=lambda: float(_env("LAKE_MAINTENANCE_INTERVAL", "600"))
    )
    """How often the applier compacts the lake's small files, expires old snapshots and deletes unused files."""
    staging_path: Path | None = field(default_factory=lambda: _optional_path("STAGING_DIR"))
    """Where uploads and job files live (default: `staging` in the data directory). Machines whose workers
    share one Redis share this path."""

    def __post_init__(self) -> None:
        if self.warehouse not in ("file", "ducklake"):
            raise ValueError(f"STOCKYARD_WAREHOUSE must be file or ducklake, not {self.warehouse!r}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"STOCKYARD_LOG_FORMAT must be text or json, not {self.log_format!r}")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"STOCKYARD_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {self.log_level!r}")
        if self.validation_chunk_rows < 1 or self.validation_chunk_bytes < 1:
            raise ValueError("STOCKYARD_VALIDATION_CHUNK_ROWS and STOCKYARD_VALIDATION_CHUNK_BYTES must be at least 1")

    def duckdb_config(self, **extra: str | int | float) -> DuckDBConfig:
        """The configuration of every DuckDB database Stockyard opens: bounded memory and threads,
        spilling to the data directory rather than the current one, and freed memory given back to the
        system in the background (service/__init__.py)."""
        return {
            "memory_limit": self.duckdb_memory_limit,
            "threads": self.duckdb_threads,
            "allocator_background_threads": True,
            "temp_directory": str(self.data_dir / "duckdb-tmp"),
            **extra,
        }

    @property
    def staging_dir(self) -> Path:
        return self.staging_path or self.data_dir / "staging"

    @property
    def lake_data_location(self) -> str:
        """The lake's data path: a directory, or an object store's URL."""
        return self.lake_data_path or str(self.data_dir / "lake")

    @property
    def is_lake(self) -> bool:
        return self.warehouse == "ducklake"

    @property
    def postgres_dir(self) -> Path:
        """The embedded PostgreSQL of the lake's catalog (when no STOCKYARD_LAKE_CATALOG is given)."""
        return self.data_dir / "postgres"

    @property
    def effective_lake_catalog(self) -> str:
        from service.embedded_postgres import catalog_url

        return self.lake_catalog or catalog_url(self.postgres_dir)

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def analytics_path(self) -> Path:
        return self.data_dir / "analytics.duckdb"

    @property
    def keys_path(self) -> Path:
        return self.data_dir / "keys.sqlite3"

    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    @property
    def redis_socket(self) -> Path:
        return self.redis_dir / "redis.sock"

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or f"unix://{self.redis_socket}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
