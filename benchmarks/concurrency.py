"""Many organizations at once, through a real `stockyard serve`: fairness and how small jobs scale with workers.

- Fairness: one organization's large inventory job runs while five other organizations post a 1,000-row
  job every 100 ms between them; each small job's latency is from the start of its POST until a poll
  sees it COMPLETED (polled every 20 ms). Reported as p50 / p95 / max, with the large job's own time.
- Scaling: ten organizations, each a client posting 1,000-row jobs back to back, against services with
  1, 2 and 4 workers; jobs/s from the first POST until the last job is COMPLETED.
- Into a large warehouse: the same ten clients against the default service whose warehouse already holds
  millions of inventory rows (a tenth per organization, written in one block each, as bulk imports are
  before the service starts), so that every merge joins against a large table.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.end_to_end import POLL_SECONDS, RunningService, ServiceError, running_service
from benchmarks.generators import BatchSpec, generate_body, write_body
from benchmarks.measure import cpu_seconds
from service import warehouse
from service.auth import KeyStore, Scope
from service.settings import Settings

SMALL_ROWS = 1_000
FAIRNESS_ORGANIZATIONS = 5
FAIRNESS_INTERVAL_SECONDS = 0.1
SCALING_ORGANIZATIONS = 10


@dataclass
class Fairness:
    large_rows: int
    large_seconds: float
    small_jobs: int
    small_rows: int
    organizations: int
    interval_seconds: float
    latencies: list[float] = field(repr=False)
    workers: int = 2

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p95(self) -> float:
        return _percentile(self.latencies, 0.95)

    @property
    def worst(self) -> float:
        return max(self.latencies)

    def as_dict(self) -> dict[str, Any]:
        return {
            "large_rows": self.large_rows,
            "large_seconds": self.large_seconds,
            "small_jobs": self.small_jobs,
            "small_rows": self.small_rows,
            "organizations": self.organizations,
            "interval_seconds": self.interval_seconds,
            "workers": self.workers,
            "p50_seconds": self.p50,
            "p95_seconds": self.p95,
            "max_seconds": self.worst,
        }


@dataclass
class Scaling:
    workers: int
    organizations: int
    jobs: int
    rows_per_job: int
    seconds: float
    warehouse_rows: int = 0
    """Rows in the inventory table before the first job."""
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU used meanwhile by the API, the workers (together), Redis and the clients (this process)."""
    transactions: int = 0
    """Apply transactions the jobs took: their distinct completedAt (jobs merged together share one)."""

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds

    def cpu_ms_per_job(self) -> dict[str, float]:
        return {process: 1000 * used / self.jobs for process, used in self.cpu_seconds.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "organizations": self.organizations,
            "jobs": self.jobs,
            "rows_per_job": self.rows_per_job,
            "seconds": self.seconds,
            "jobs_per_second": self.jobs_per_second,
            "warehouse_rows": self.warehouse_rows,
            "cpu_seconds": self.cpu_seconds,
            "transactions": self.transactions,
        }


def _cpu_used(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by the service's processes, the workers summed, and by this process."""
    used: dict[str, float] = {"clients": time.process_time()}
    for role, pid in pids.items():
        name = "workers" if role.startswith("worker") else role
        used[name] = used.get(name, 0.0) + (cpu_seconds(pid) or 0.0)
    return used


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _keys(service: RunningService, organizations: list[str]) -> dict[str, str]:
    store = KeyStore(service.settings.keys_path)
    return {
        organization: store.create(organization, [Scope.IMPORT_WRITE, Scope.IMPORT_READ])[1]
        for organization in organizations
    }


def _post(service: RunningService, key: str, kind: str, body: bytes) -> str:
    headers = {"x-api-key": key, "content-type": "application/json"}
    response = service.client.post(f"/api/import/{kind}", content=body, headers=headers)
    if response.status_code != 202:
        raise ServiceError(f"POST {kind} answered {response.status_code}: {response.text[:300]}")
    job_id: str = response.json()["jobId"]
    return job_id


def _completed_at(service: RunningService, key: str, job_id: str) -> str:
    completed_at: str = service.client.get(f"/api/import/status/{job_id}", headers={"x-api-key": key}).json()[
        "completedAt"
    ]
    return completed_at


def _status(service: RunningService, key: str, job_id: str) -> str:
    response = service.client.get(f"/api/import/status/{job_id}", headers={"x-api-key": key})
    if response.status_code != 200:
        raise ServiceError(f"status of {job_id} answered {response.status_code}: {response.text[:300]}")
    status: str = response.json()["status"]
    if status == "FAILED":
        raise ServiceError(f"job {job_id} failed: {response.text[:300]}")
    return status


def run_fairness(work: Path, large_rows: int, seed: int = 7) -> Fairness:
    """See the module docstring: the small jobs' latency while a large one of another organization runs."""
    large_body = work / "fairness-large.json"
    with open(large_body, "wb") as sink:
        write_body(BatchSpec("inventory", large_rows, seed, bad_share=0.0, existing_share=0.0), sink)
    smalls = [generate_body(BatchSpec("inventory", SMALL_ROWS, seed + 1 + n, bad_share=0.0)) for n in range(40)]
    with _service(work / "fairness") as service:
        organizations = [f"small-{n}" for n in range(FAIRNESS_ORGANIZATIONS)]
        keys = _keys(service, ["bulk", *organizations])
        started = time.perf_counter()
        with open(large_body, "rb") as handle:
            response = service.client.post("/api/import/inventory", content=handle, headers={"x-api-key": keys["bulk"]})
        large = response.json()["jobId"]
        while _status(service, keys["bulk"], large) == "PENDING":
            time.sleep(POLL_SECONDS)
        latencies: list[float] = []
        pending: dict[str, tuple[str, float]] = {}
        lock = threading.Lock()
        done = threading.Event()

        def poll() -> None:
            while not done.is_set() or pending:
                with lock:
                    waiting = list(pending.items())
                for job_id, (key, posted) in waiting:
                    if _status(service, key, job_id) == "COMPLETED":
                        with lock:
                            latencies.append(time.perf_counter() - posted)
                            del pending[job_id]
                time.sleep(POLL_SECONDS)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        large_seconds = 0.0
        sent = 0
        while not large_seconds or sent < 20:
            organization = organizations[sent % len(organizations)]
            posted = time.perf_counter()
            job_id = _post(service, keys[organization], "inventory", smalls[sent % len(smalls)])
            with lock:
                pending[job_id] = (keys[organization], posted)
            sent += 1
            if not large_seconds and _status(service, keys["bulk"], large) == "COMPLETED":
                large_seconds = time.perf_counter() - started
            time.sleep(max(0.0, FAIRNESS_INTERVAL_SECONDS - (time.perf_counter() - posted)))
        done.set()
        poller.join(120)
        return Fairness(
            large_rows=large_rows,
            large_seconds=large_seconds,
            small_jobs=sent,
            small_rows=SMALL_ROWS,
            organizations=FAIRNESS_ORGANIZATIONS,
            interval_seconds=FAIRNESS_INTERVAL_SECONDS,
            latencies=latencies,
            workers=service.settings.workers,
        )


def run_scaling(
    work: Path, workers: int | None, jobs_per_organization: int, seed: int = 7, warehouse_rows: int = 0
) -> Scaling:
    """Ten organizations posting small jobs back to back, against `workers` workers (None: the default),
    into a warehouse that holds `warehouse_rows` inventory rows before the first."""
    bodies = [generate_body(BatchSpec("inventory", SMALL_ROWS, seed + 100 + n, bad_share=0.0)) for n in range(20)]
    organizations = [f"org-{n}" for n in range(SCALING_ORGANIZATIONS)]
    name = f"scaling-{workers or 'default'}" + (f"-{warehouse_rows}" if warehouse_rows else "")
    preload = functools.partial(preload_inventory, rows=warehouse_rows, organizations=organizations)
    with _service(work / name, workers=workers, before_start=preload if warehouse_rows else None) as service:
        keys = _keys(service, organizations)
        for organization in organizations:  # warm up: every organization's first job, untimed
            _wait(service, keys[organization], [_post(service, keys[organization], "inventory", bodies[0])])
        accepted: dict[str, list[str]] = {organization: [] for organization in organizations}

        def client(organization: str) -> None:
            for n in range(jobs_per_organization):
                accepted[organization].append(_post(service, keys[organization], "inventory", bodies[n % len(bodies)]))

        pids = service.process_pids()
        cpu_before = _cpu_used(pids)
        started = time.perf_counter()
        clients = [threading.Thread(target=client, args=(organization,)) for organization in organizations]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        for organization, job_ids in accepted.items():
            _wait(service, keys[organization], job_ids)
        seconds = time.perf_counter() - started
        cpu = {process: used - cpu_before.get(process, 0.0) for process, used in _cpu_used(pids).items()}
        commits = {_completed_at(service, keys[org], job_id) for org, job_ids in accepted.items() for job_id in job_ids}
    jobs = SCALING_ORGANIZATIONS * jobs_per_organization
    return Scaling(
        service.settings.workers, SCALING_ORGANIZATIONS, jobs, SMALL_ROWS, seconds, warehouse_rows, cpu, len(commits)
    )


def preload_inventory(data_dir: Path, rows: int, organizations: list[str]) -> None:
    """Write `rows` inventory rows into the warehouse of `data_dir`, a block per organization, before the
    service holds it (its own schema, so the service opens it as its own)."""
    settings = Settings(data_dir=data_dir.resolve())
    live = warehouse.Warehouse(settings.data_dir, settings.warehouse_path, settings.duckdb_config())
    if not live.try_hold():
        raise ServiceError(f"the warehouse of {data_dir} is held by another process")
    per_organization = rows // len(organizations)
    try:
        with live.cursor() as con:
            for organization in organizations:
                con.execute(
                    "INSERT INTO inventory_levels SELECT $org, 'PRE-' || (i // 8), 'LOC-' || (i % 8), i % 100,"
                    " 0, 0, i % 100, now(), now(), 'preload' FROM range($rows) t(i)",
                    {"org": organization, "rows": per_organization},
                )
            con.execute("CHECKPOINT")
    finally:
        live.release()


def _wait(service: RunningService, key: str, job_ids: list[str]) -> None:
    deadline = time.monotonic() + 600
    for job_id in job_ids:
        while _status(service, key, job_id) != "COMPLETED":
            if time.monotonic() > deadline:
                raise ServiceError(f"job {job_id} did not complete in 600 s")
            time.sleep(POLL_SECONDS)


@contextlib.contextmanager
def _service(
    directory: Path, workers: int | None = None, before_start: Callable[[Path], None] | None = None
) -> Iterator[RunningService]:
    with tempfile.TemporaryDirectory(prefix="stockyard-concurrency-") as short:  # a short unix socket path
        data_dir = Path(short) / directory.name
        if before_start is not None:
            data_dir.mkdir(parents=True)
            before_start(data_dir)
        with running_service(data_dir, workers=workers) as service:
            yield service
