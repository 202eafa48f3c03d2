"""End to end through the real service: `stockyard serve` in a subprocess, driven over HTTP.

Each measured run gets a fresh data directory and service (API, one worker, embedded Redis), posts
the previous batch and waits for it (untimed), then streams the measured body from disk with httpx
and polls the job until it is COMPLETED. Times run from the first byte sent. Peak memory (VmHWM) of
the API and of the worker is sampled every 20 ms while the job runs. The worker runs jobs in its own
process (RQ's SimpleWorker); should a work horse ever be forked, the larger of the two counts (a horse
is gone when its job ends, so its peak is the last sample taken). Each process's RSS at rest is read
once the service is ready and idle (its workers warmed up), before any upload.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx

from benchmarks.generators import BatchSpec, generate_body
from benchmarks.measure import (
    child_pids,
    command_line,
    cpu_seconds,
    free_port,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
)
from service.auth import KeyStore, Scope
from service.kinds import KINDS
from service.settings import Settings

ORGANIZATION = "bench"
POLL_SECONDS = 0.02
START_TIMEOUT_SECONDS = 120.0
JOB_TIMEOUT_SECONDS = 4 * 3600.0
FINAL = ("COMPLETED", "FAILED")


class ServiceError(RuntimeError):
    """The service did not start, or a job did not end as it should."""


@dataclass
class RunningService:
    """A `stockyard serve` process and what a client needs to talk to it."""

    process: subprocess.Popen[bytes]
    settings: Settings
    url: str
    key: str
    log_path: Path
    client: httpx.Client = field(repr=False)
    resting_rss: dict[str, int] = field(default_factory=dict)
    """RSS of the API and the worker once the service is ready, before any upload."""

    def role_pids(self) -> dict[str, int]:
        """The API and worker processes `serve` started (Redis is not measured): `worker`, `worker-1`, ..."""
        roles: dict[str, int] = {}
        for pid in child_pids(self.process.pid):
            command = command_line(pid)
            if "api" in command:
                roles["api"] = pid
            elif "worker" in command:
                workers = sum(role.startswith("worker") for role in roles)
                roles["worker" if not workers else f"worker-{workers}"] = pid
        return roles

    def process_pids(self) -> dict[str, int]:
        """The API, the workers and Redis (`redis`), each process `serve` started."""
        pids = self.role_pids()
        for pid in child_pids(self.process.pid):
            if any("redis-server" in part for part in command_line(pid)):
                pids["redis"] = pid
        return pids

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def post(self, kind: str, body: Path | bytes, *, dry_run: bool = False) -> tuple[str, float]:
        """POST a body (streamed from a file, or bytes); return (job id, seconds to the 202)."""
        headers = {"x-api-key": self.key, "content-type": "application/json"}
        url = f"/api/import/{kind}" + ("?dryRun=true" if dry_run else "")
        started = time.perf_counter()
        if isinstance(body, Path):
            with open(body, "rb") as handle:  # httpx reads a file in 64 KiB chunks, with a Content-Length
                response = self.client.post(url, content=handle, headers=headers)
        else:
            response = self.client.post(url, content=body, headers=headers)
        accepted = time.perf_counter() - started
        if response.status_code != 202:
            raise ServiceError(f"POST {kind} answered {response.status_code}: {response.text[:500]}")
        job_id: str = response.json()["jobId"]
        return job_id, accepted

    def status(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/import/status/{job_id}", headers={"x-api-key": self.key})
        if response.status_code != 200:
            raise ServiceError(f"status of {job_id} answered {response.status_code}: {response.text[:500]}")
        status: dict[str, Any] = response.json()
        return status

    def wait(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            status = self.status(job_id)
            if status["status"] in FINAL:
                return status
            if self.process.poll() is not None:
                raise ServiceError(f"the service exited with {self.process.returncode}:\n{self.log_tail()}")
            time.sleep(POLL_SECONDS)
        raise ServiceError(f"job {job_id} did not finish in {JOB_TIMEOUT_SECONDS} s")


def _child_environment() -> dict[str, str]:
    """The caller's environment without Stockyard's settings: the service gets only what we pass."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STOCKYARD_") and k != "REDIS_URL"}


def _wait_until_ready(service: RunningService) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    probe = f"/api/import/status/{'0' * 32}"
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ServiceError(f"the service exited with {service.process.returncode}:\n{service.log_tail()}")
        with contextlib.suppress(httpx.TransportError):
            answered = service.client.get(probe, headers={"x-api-key": service.key}).status_code == 404
            if answered and "worker" in service.role_pids():
                return
        time.sleep(0.1)
    raise ServiceError(f"the service did not answer within {START_TIMEOUT_SECONDS} s:\n{service.log_tail()}")


def _wait_until_idle(roles: dict[str, int], window: float = 0.5, timeout: float = 60.0) -> None:
    """Until every process has used less than a tenth of a core for `window` seconds: a worker that answers
    is still loading and warming up (service/prepare.py warm_up), and its RSS at rest is read after that."""
    deadline = time.monotonic() + timeout
    before = {role: cpu_seconds(pid) or 0.0 for role, pid in roles.items()}
    busy = list(roles)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = {role: cpu_seconds(pid) or 0.0 for role, pid in roles.items()}
        busy = [role for role in roles if now[role] - before[role] >= 0.1 * window]
        if not busy:
            return
        before = now
    print(f"not idle within {timeout:.0f} s ({', '.join(busy)}): the RSS at rest is read while busy", file=sys.stderr)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to `serve`, which stops its API, worker and Redis in order; kill only if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


@contextlib.contextmanager
def running_service(
    data_dir: Path, workers: int | None = None, *, python: str | None = None, environment: dict[str, str] | None = None
) -> Iterator[RunningService]:
    """A fresh service on a free port (with `workers` workers, or the default), with a key for
    ORGANIZATION; stopped on exit. `python` runs it in another environment (the lake's), with the
    STOCKYARD_* settings of `environment` (STOCKYARD_WAREHOUSE=ducklake, say)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lake = (environment or {}).get("STOCKYARD_WAREHOUSE", "file")
    settings = Settings(data_dir=data_dir.resolve(), warehouse=lake)
    settings = Settings(data_dir=data_dir.resolve(), workers=workers or settings.workers, warehouse=lake)
    _, key = KeyStore(settings.keys_path).create(ORGANIZATION, [Scope.IMPORT_WRITE, Scope.IMPORT_READ])
    port = free_port()
    log_path = data_dir / "service.log"
    command = [python or sys.executable, "-m", "service.cli", "serve", "--data-dir", str(settings.data_dir)]
    command += ["--port", str(port), "--workers", str(settings.workers)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env={**_child_environment(), **(environment or {})}, cwd=data_dir, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=httpx.Timeout(3600.0, connect=10.0))
    service = RunningService(process, settings, url, key, log_path, client)
    try:
        _wait_until_ready(service)
        _wait_until_idle(service.role_pids())
        for role, pid in service.role_pids().items():
            resting = rss_bytes(pid)
            if resting is not None:  # the workers: the largest of them
                name = _role_name(role)
                service.resting_rss[name] = max(service.resting_rss.get(name, 0), resting)
        yield service
    finally:
        client.close()
        _stop(process)


def _role_name(role: str) -> str:
    """`worker-1` and the other workers are reported as `worker`: the largest of them."""
    return "worker" if role.startswith("worker") else role


class MemorySampler:
    """Peak RSS of the API, the worker and the worker's work horses, sampled in a thread."""

    def __init__(self, roles: dict[str, int], interval: float = 0.02) -> None:
        self.roles = roles
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self.reset_ok = all(reset_peak_rss(pid) for pid in roles.values())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for role, pid in self.roles.items():
            self._keep(role, peak_rss_bytes(pid))
        for role, pid in self.roles.items():
            if role.startswith("worker"):
                for horse in _children(pid):
                    self._keep("work horse", peak_rss_bytes(horse))

    def _keep(self, role: str, value: int | None) -> None:
        if value is not None:  # the workers: the largest of them
            self.peaks[_role_name(role)] = max(self.peaks.get(_role_name(role), 0), value)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return child_pids(pid)


@dataclass
class EndToEnd:
    kind: str
    rows: int
    body_bytes: int
    accepted_seconds: float
    completed_seconds: float
    failed_rows: int
    warning_count: int
    peak_rss: dict[str, int]
    peak_rss_reset: bool
    resting_rss: dict[str, int]
    """RSS of each process once the service was ready, before any upload: what no body size changes."""
    warehouse_bytes: int
    created_to_started_seconds: float | None
    """From the job record: queued until a worker took it (createdAt is stamped just before the 202)."""
    started_to_completed_at_seconds: float | None
    """From the job record: startedAt to completedAt, however the service stamps them."""
    dry_run_seconds: float | None = None
    """The same body again with ?dryRun=true, first byte to COMPLETED: validated, counted, nothing written."""


@dataclass
class JobStream:
    kind: str
    jobs: int
    rows_per_job: int
    seconds: float
    warehouse_rows: int
    warehouse_bytes: int
    mean_started_to_completed_at_seconds: float | None
    """Mean over the jobs of startedAt to completedAt, from their job records."""
    commits: int
    """Transactions the jobs were applied in: queued small jobs are applied together (distinct completedAt)."""

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else 0.0


def import_end_to_end(service: RunningService, kind: str, body: Path, previous: Path) -> EndToEnd:
    """Seed with `previous`, then time `body` from its first byte to COMPLETED, then its dry run.

    Each clock starts at a warehouse at rest: the analysts' copy of the job before published (a checkpoint
    and a copy of the file, that job's own work), which would otherwise run beside the timed upload."""
    seed_id, _ = service.post(kind, previous)
    if service.wait(seed_id)["status"] != "COMPLETED":
        raise ServiceError(f"the seed job of {kind} did not complete:\n{service.log_tail()}")
    _at_rest(service, kind, seed_id)
    with MemorySampler(service.role_pids()) as memory:
        started = time.perf_counter()
        job_id, accepted = service.post(kind, body)
        status = service.wait(job_id)
        completed = time.perf_counter() - started
    if status["status"] != "COMPLETED" or status["processedCount"] != status["rowCount"]:
        raise ServiceError(f"the {kind} job ended {status['status']}: {status['errors'][:3]}")
    _at_rest(service, kind, job_id)
    dry_started = time.perf_counter()
    dry_id, _ = service.post(kind, body, dry_run=True)
    dry = service.wait(dry_id)
    dry_seconds = time.perf_counter() - dry_started
    if dry["status"] != "COMPLETED" or dry.get("wouldInsert") is None:
        raise ServiceError(f"the {kind} dry run ended {dry['status']}: {dry['errors'][:3]}")
    peaks = dict(memory.peaks)
    if "work horse" in peaks:
        peaks["worker"] = max(peaks.get("worker", 0), peaks["work horse"])
    return EndToEnd(
        kind=kind,
        rows=int(status["rowCount"]),
        body_bytes=body.stat().st_size,
        accepted_seconds=accepted,
        completed_seconds=completed,
        failed_rows=int(status["failedCount"]),
        warning_count=len(status["warnings"]),
        peak_rss=peaks,
        peak_rss_reset=memory.reset_ok,
        resting_rss=dict(service.resting_rss),
        warehouse_bytes=warehouse_bytes(service.settings),
        created_to_started_seconds=_span(status, "createdAt", "startedAt"),
        started_to_completed_at_seconds=_span(status, "startedAt", "completedAt"),
        dry_run_seconds=dry_seconds,
    )


def warehouse_bytes(settings: Settings) -> int:
    """The warehouse on disk: the file, or the lake's data files (its catalog is PostgreSQL's)."""
    if not settings.is_lake:
        return settings.warehouse_path.stat().st_size
    files = Path(settings.lake_data_location).rglob("*")
    return sum(path.stat().st_size for path in files if path.is_file())


def _span(status: dict[str, Any], start: str, end: str) -> float | None:
    if not status.get(start) or not status.get(end):
        return None
    begin, finish = (datetime.fromisoformat(status[name].replace("Z", "+00:00")) for name in (start, end))
    return (finish - begin).total_seconds()


def _at_rest(service: RunningService, kind: str, job_id: str) -> None:
    """Wait until the analysts' copy holds `job_id` (a lake has no copy: its readers see commits at once)."""
    if not service.settings.is_lake:
        _published_rows(service, KINDS[kind].tables.rows.name, job_id)


def _published_rows(service: RunningService, table: str, job_id: str, timeout: float = 60) -> int:
    """Rows in `table` of the analysts' copy, once it holds `job_id` (it is made after the job reads
    COMPLETED, and at most once per publish interval)."""
    deadline = time.monotonic() + timeout
    while True:
        with duckdb.connect(str(service.settings.analytics_path), read_only=True) as con:
            (held,) = con.execute("SELECT count(*) FROM import_jobs WHERE job_id = ?", [job_id]).fetchone() or (0,)
            (rows,) = con.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
        if held:
            return int(rows)
        if time.monotonic() > deadline:
            raise ServiceError(f"the analysts' copy did not hold job {job_id} after {timeout:.0f} s")
        time.sleep(POLL_SECONDS * 10)


def run_job_stream(service: RunningService, spec: BatchSpec, jobs: int) -> JobStream:
    """Post `jobs` small bodies back to back into the warehouse as it is; time until the last completes."""
    bodies = [generate_body(BatchSpec(spec.kind, spec.rows, seed=spec.seed + 1 + n, bad_share=0)) for n in range(jobs)]
    started = time.perf_counter()
    job_ids = [service.post(spec.kind, body)[0] for body in bodies]
    statuses = [service.wait(job_id) for job_id in job_ids]
    seconds = time.perf_counter() - started
    if any(status["status"] != "COMPLETED" for status in statuses):
        raise ServiceError(f"a small {spec.kind} job did not complete:\n{service.log_tail()}")
    spans = [_span(status, "startedAt", "completedAt") for status in statuses]
    known = [span for span in spans if span is not None]
    table = KINDS[spec.kind].tables.rows.name
    warehouse_rows = _published_rows(service, table, job_ids[-1])
    return JobStream(
        kind=spec.kind,
        jobs=jobs,
        rows_per_job=spec.rows,
        seconds=seconds,
        warehouse_rows=int(warehouse_rows),
        warehouse_bytes=warehouse_bytes(service.settings),
        mean_started_to_completed_at_seconds=sum(known) / len(known) if known else None,
        commits=len({status["completedAt"] for status in statuses}),
    )
