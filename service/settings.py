"""Settings in one place: flags, then STOCKYARD_* environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DEFAULT_MAX_BODY_BYTES = 1 << 30


def _env(name: str, default: str) -> str:
    return os.environ.get(f"STOCKYARD_{name}", default)


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
    publish_interval_seconds: float = field(default_factory=lambda: float(_env("PUBLISH_INTERVAL", "2")))
    """Least time between two copies of the warehouse for analysts while jobs keep coming."""
    job_timeout_seconds: int = field(default_factory=lambda: int(_env("JOB_TIMEOUT", "7200")))
    """How long one import may run before the worker gives up on it (RQ's default is 180 s)."""
    queue_name: str = field(default_factory=lambda: _env("QUEUE", "stockyard-imports"))
    """The RQ queue imports go through; one worker drains it, so merges keep their order."""
    recovery_interval_seconds: float = field(default_factory=lambda: float(_env("RECOVERY_INTERVAL", "10")))
    """How often an idle worker looks for accepted jobs that Redis lost or whose worker died."""
    shutdown_timeout_seconds: float = field(default_factory=lambda: float(_env("SHUTDOWN_TIMEOUT", "60")))
    """How long `serve` lets the API and a running job finish on Ctrl-C/SIGTERM before killing them."""

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"

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
