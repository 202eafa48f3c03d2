"""Nothing accepted is lost: real kills, real Redis restarts and flushes, a real graceful shutdown.

Each scenario runs one workload of eight imports whose outcome depends on their order, and compares
the warehouse with the one a clean run of the same workload gives (docs/reliability.md lists them).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import redis
from litestar.testing import TestClient

from service.app import create_app
from service.auth import KeyStore, Scope
from service.job_store import OPEN_JOBS
from service.settings import Settings, get_settings
from service.worker import drain
from tests.conftest import Api
from tests.service.processes import (
    Stockyard,
    children_of,
    external_redis,
    frozen,
    holders_of,
    processes_using,
    wait_for,
)
from tests.service.uploads import TABLES

pytestmark = pytest.mark.slow

PO = {"externalPoNumber": "PO-1", "supplierId": "S-9", "destinationLocationId": "DC"}
PO_LINES = [{"skuId": "P1", "quantity": 2, "unitCost": 1.5}, {"skuId": "P2", "quantity": 1, "unitCost": "2"}]
ORDER_LINES = [{"skuId": "P1", "quantity": 1, "locationId": "S1"}]
WORKLOAD: list[tuple[str, dict[str, Any]]] = [
    ("catalog", {"products": [{"externalId": "P1", "name": "Widget"}, {"externalId": "P2"}]}),
    ("inventory", {"levels": [{"skuId": "P1", "locationId": "WH1", "quantityOnHand": 5}, {"skuId": "P3"}]}),
    ("purchase-orders", {"purchaseOrders": [{**PO, "lines": PO_LINES}]}),
    ("inventory", {"levels": [{"skuId": "P1", "locationId": "WH1", "quantityOnHand": 7, "quantityReserved": "2"}]}),
    ("purchase-orders", {"purchaseOrders": [{**PO, "status": "confirmed", "lines": [{"skuId": "P3", "quantity": 4}]}]}),
    ("orders", {"orders": [{"externalOrderId": "O-1", "lines": ORDER_LINES}, {"externalOrderId": "O-2", "lines": []}]}),
    ("demand-history", {"records": [{"skuId": "P1", "locationId": "WH1", "weekStarting": "2026-11-26"}]}),
    ("suppliers", {"suppliers": [{"externalId": "S-9"}, {"externalId": "S-10"}]}),
]
"""Eight imports whose outcome depends on their order; some rows are bad on purpose (row errors)."""
Query = Callable[[str], list[tuple[Any, ...]]]


def snapshot(query: Query, job_ids: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """The warehouse without timestamps; job ids replaced by their place in the workload."""
    place = {job_id: index for index, job_id in enumerate(job_ids)}
    tables = {
        table: sorted(
            tuple(place.get(value, value) if isinstance(value, str) else value for value in row)
            for row in query(f"SELECT * EXCLUDE (created_at, updated_at) FROM {table}")
        )
        for table in TABLES
    }
    jobs = query("SELECT job_id, type, status, row_count, processed_count, failed_count FROM import_jobs")
    tables["import_jobs"] = sorted((place[row[0]], *row[1:]) for row in jobs)
    return tables


@pytest.fixture(scope="session")
def clean_run(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[Any, ...]]]:
    """The warehouse after the workload ran without trouble, through the same API and worker code."""
    directory = tmp_path_factory.mktemp("clean-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STOCKYARD_DATA_DIR", str(directory))
        patch.setenv("REDIS_URL", redis_url)
        patch.setenv("STOCKYARD_PUBLISH_INTERVAL", "0")
        patch.setenv("STOCKYARD_QUEUE", "clean-run")
        get_settings.cache_clear()
        settings = get_settings()
        connection = redis.Redis.from_url(redis_url)
        with TestClient(create_app(settings, connection)) as client:
            api = Api(client, settings, connection)
            job_ids = [api.post(kind, body).json()["jobId"] for kind, body in WORKLOAD]
            api.work()
            result = snapshot(api.query, job_ids)
        connection.close()
    get_settings.cache_clear()
    return result


@pytest.fixture
def stockyards(tmp_path: Path) -> Iterator[list[Stockyard]]:
    created: list[Stockyard] = []
    yield created
    for stockyard in created:
        stockyard.cleanup()


def accept_workload(stockyard: Stockyard) -> list[str]:
    return [stockyard.accept(kind, body) for kind, body in WORKLOAD]


def assert_completed_once(stockyard: Stockyard, job_ids: list[str], expected: dict[str, Any]) -> None:
    statuses = stockyard.wait_finished(job_ids)
    assert [s["status"] for s in statuses] == ["COMPLETED"] * len(job_ids), statuses
    assert snapshot(stockyard.query, job_ids) == expected  # one import_jobs row per job: applied once


def _try_flock(handle: Any) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def wait_for_paused_merge(log: Callable[[], str], *job_ids: str) -> None:
    """Until the merge of a transaction that starts with one of `job_ids` holds it open."""
    paused = [f"merge of job {job_id} paused" for job_id in job_ids]
    wait_for(lambda: any(line in log() for line in paused), 30, f"the merge of one of {job_ids} to start")


@pytest.mark.parametrize("redis_kind", ["embedded", "external"])
def test_kill_9_of_serve_right_after_202_loses_nothing(
    stockyards: list[Stockyard], tmp_path: Path, clean_run: dict[str, Any], redis_kind: str
) -> None:
    with external_redis(tmp_path / "redis") as server:
        stockyard = Stockyard(tmp_path / "stockyard", redis_url=server.url if redis_kind == "external" else None)
        stockyards.append(stockyard)
        first = stockyard.serve(STOCKYARD_TEST_MERGE_DELAY="60")
        job_ids = accept_workload(stockyard)
        wait_for_paused_merge(first.output, job_ids[0])  # the first job is mid-merge, the others queued
        first.kill_group(signal.SIGKILL)
        first.wait(timeout=10)
        wait_for(lambda: not processes_using(str(stockyard.data_dir)), 10, "every child of serve to die with it")
        if redis_kind == "external":
            server.restart()  # the external Redis goes down too; it comes back from its append-only file
        stockyard.serve()
        assert_completed_once(stockyard, job_ids, clean_run)


def test_worker_killed_mid_merge_leaves_none_of_the_job_and_is_picked_up_at_once(
    stockyards: list[Stockyard], tmp_path: Path, clean_run: dict[str, Any]
) -> None:
    stockyard = Stockyard(tmp_path / "stockyard")
    stockyards.append(stockyard)
    serve = stockyard.serve(STOCKYARD_TEST_MERGE_DELAY="2")
    job_ids = accept_workload(stockyard)
    wait_for_paused_merge(serve.output, job_ids[0])
    workers = children_of(serve.pid, "service.cli worker")
    assert len(workers) == 2  # the default
    lock_path = stockyard.data_dir / "warehouse.lock"
    (applier,) = [pid for pid in holders_of(lock_path) if pid in workers]
    standby = [pid for pid in workers if pid != applier]
    with frozen(serve.pid, *standby):  # nobody restarts or takes over while we look
        os.killpg(applier, signal.SIGKILL)  # in the middle of the merge's transaction
        killed_at = time.monotonic()
        with open(lock_path, "a") as lock:
            wait_for(lambda: _try_flock(lock), 10, "the kernel to drop the dead applier's lock")
            with duckdb.connect(str(stockyard.data_dir / "warehouse.duckdb"), read_only=True) as live:
                assert live.execute("SELECT count(*) FROM import_jobs").fetchall() == [(0,)]
                assert live.execute("SELECT count(*) FROM products").fetchall() == [(0,)]  # none of the job
    first = stockyard.wait_finished(job_ids[:1])
    assert first[0]["status"] == "COMPLETED"
    assert time.monotonic() - killed_at < 60
    assert "The worker exited with -9; restarting it" in serve.output()
    assert serve.output().count("applies jobs to the warehouse now") == 2  # the standby took over
    assert_completed_once(stockyard, job_ids, clean_run)


@pytest.mark.parametrize(
    "organizations", [["acme"] * 4, ["acme", "globex", "acme", "globex"]], ids=["one organization", "two"]
)
def test_worker_killed_mid_merge_of_small_jobs_applied_together_leaves_none_of_them(
    stockyards: list[Stockyard], tmp_path: Path, organizations: list[str]
) -> None:
    """Queued small jobs are applied in one transaction, those of other organizations waiting with them
    too: a kill in it loses none and applies none twice."""
    with external_redis(tmp_path / "redis") as server:
        stockyard = Stockyard(tmp_path / "stockyard", redis_url=server.url)
        stockyards.append(stockyard)
        stockyard.api()
        jobs = [
            (organization, stockyard.accept("inventory", {"levels": [{"skuId": "P1", "locationId": "WH1",
                                                                      "quantityOnHand": quantity}]}, organization))
            for quantity, organization in enumerate(organizations, start=1)
        ]  # fmt: skip
        job_ids = [job_id for _, job_id in jobs]
        # queued before any worker runs, one apply lane: the first organization's run takes the rest along.
        # Which organization's comes first depends on timing: the applier asks for every organization's
        # on taking over, in Redis's order, and again for each as its jobs are prepared.
        one_lane = {"STOCKYARD_APPLY_LANES": "1"}
        worker = stockyard.start("worker", env=stockyard.environment(STOCKYARD_TEST_MERGE_DELAY="2", **one_lane))
        wait_for_paused_merge(worker.output, *job_ids)
        worker.kill_group()
        worker.wait(10)
        assert [stockyard.status(job_id, org)["status"] for org, job_id in jobs] == ["PROCESSING"] * 4
        with duckdb.connect(str(stockyard.data_dir / "warehouse.duckdb"), read_only=True) as live:
            assert live.execute("SELECT count(*) FROM import_jobs").fetchall() == [(0,)]
            assert live.execute("SELECT count(*) FROM inventory_levels").fetchall() == [(0,)]

        restarted = stockyard.start("worker", log="worker-2.log", env=stockyard.environment(**one_lane))
        statuses = [stockyard.wait_finished([job_id], organization=org)[0] for org, job_id in jobs]
        assert [s["status"] for s in statuses] == ["COMPLETED"] * 4
        assert len({s["completedAt"] for s in statuses}) == 1  # again in one transaction
        assert "re-queued" not in restarted.output()  # their prepared results were reused, not redone
        levels = stockyard.query(
            "SELECT organization_id, quantity_on_hand, last_job_id FROM inventory_levels ORDER BY 1", after=job_ids
        )
        last = {org: (float(quantity), job_id) for quantity, (org, job_id) in enumerate(jobs, start=1)}
        assert levels == [(org, *last[org]) for org in sorted(last)]  # each organization's last job wins
        applied = stockyard.query("SELECT job_id FROM import_jobs ORDER BY created_at")
        assert applied == [(job_id,) for job_id in job_ids]  # each applied exactly once


def test_redis_lost_while_the_worker_runs(
    stockyards: list[Stockyard], tmp_path: Path, clean_run: dict[str, Any]
) -> None:
    """Redis restarted empty (no persistence) mid-merge: the worker notices and rebuilds the queue."""
    with external_redis(tmp_path / "redis", appendonly=False) as server:
        stockyard = Stockyard(tmp_path / "stockyard", redis_url=server.url)
        stockyards.append(stockyard)
        stockyard.api()
        worker = stockyard.start("worker", env=stockyard.environment(STOCKYARD_TEST_MERGE_DELAY="2"))
        job_ids = accept_workload(stockyard)
        wait_for_paused_merge(worker.output, job_ids[0])
        server.restart()  # everything in Redis is gone: queue, job records, index
        record = stockyard.data_dir / "staging" / "acme" / f"{job_ids[3]}.json"
        before = json.loads(record.read_text())["status"]
        answered = stockyard.status(job_ids[3])["status"]  # Redis knows nothing of it now
        after = json.loads(record.read_text())["status"]
        assert answered in (before, after)  # from the durable record, which the worker may move on meanwhile
        assert_completed_once(stockyard, job_ids, clean_run)
        assert "recovery (full pass): re-queued" in worker.output()


@pytest.mark.parametrize("shutdown", ["sigint-to-group", "sigterm"])
def test_graceful_shutdown_finishes_in_flight_work_and_leaves_nothing_locked(
    stockyards: list[Stockyard], tmp_path: Path, clean_run: dict[str, Any], shutdown: str
) -> None:
    stockyard = Stockyard(tmp_path / "stockyard")
    stockyards.append(stockyard)
    serve = stockyard.serve(STOCKYARD_TEST_MERGE_DELAY="2")
    job_ids = [stockyard.accept(kind, body) for kind, body in WORKLOAD[:-1]]
    wait_for_paused_merge(serve.output, job_ids[0])
    uploading = threading.Event()
    results: list[httpx.Response] = []

    def slow_body() -> Iterator[bytes]:
        kind, body = WORKLOAD[-1]
        text = httpx.Request("POST", "/", json=body).content
        uploading.set()
        for start in range(0, len(text), 4):  # about 1.5 s in all: still arriving when the signal lands
            time.sleep(0.1)
            yield text[start : start + 4]

    def upload() -> None:
        results.append(stockyard.post(WORKLOAD[-1][0], slow_body()))  # type: ignore[arg-type]

    uploader = threading.Thread(target=upload)
    uploader.start()
    uploading.wait(10)
    time.sleep(0.3)
    if shutdown == "sigint-to-group":  # Ctrl-C at the terminal: the whole foreground group
        serve.kill_group(signal.SIGINT)
    else:
        serve.popen.send_signal(signal.SIGTERM)
    time.sleep(1)
    with pytest.raises(httpx.ConnectError):  # refused cleanly once the API stopped listening
        httpx.get(f"{stockyard.url}/schema/openapi.json", timeout=5)
    uploader.join(30)
    assert serve.wait(timeout=60) == 0, serve.output()
    assert results[0].status_code == 202, results[0].text  # the in-flight upload finished
    job_ids.append(results[0].json()["jobId"])

    assert not processes_using(str(stockyard.data_dir))
    with open(stockyard.data_dir / "warehouse.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # not left locked
    with duckdb.connect(str(stockyard.data_dir / "warehouse.duckdb")) as live:  # read-write: nobody holds it
        completed = live.execute("SELECT job_id FROM import_jobs WHERE status = 'COMPLETED'").fetchall()
    assert (job_ids[0],) in completed  # the running job completed before the worker stopped
    assert not (stockyard.data_dir / "redis" / "redis.sock").exists()  # Redis shut down cleanly

    stockyard.serve()
    assert_completed_once(stockyard, job_ids, clean_run)


def test_a_job_past_the_shutdown_timeout_is_rolled_back_and_resumed(
    stockyards: list[Stockyard], tmp_path: Path, clean_run: dict[str, Any]
) -> None:
    stockyard = Stockyard(tmp_path / "stockyard")
    stockyards.append(stockyard)
    serve = stockyard.serve(STOCKYARD_TEST_MERGE_DELAY="60", STOCKYARD_SHUTDOWN_TIMEOUT="2")
    job_ids = accept_workload(stockyard)
    wait_for_paused_merge(serve.output, job_ids[0])
    serve.popen.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=30) == 0, serve.output()
    assert not processes_using(str(stockyard.data_dir))
    with duckdb.connect(str(stockyard.data_dir / "warehouse.duckdb")) as live:
        assert live.execute("SELECT count(*) FROM import_jobs").fetchall() == [(0,)]  # rolled back whole
    stockyard.serve()
    assert_completed_once(stockyard, job_ids, clean_run)


# --- in-process: a real Redis flushed under the service, the worker's own recovery ----------------


def run_recovering_worker(settings: Settings, connection: redis.Redis) -> None:
    """A worker in burst mode: recovery first, then everything prepared and applied."""
    drain(settings, connection)


def test_redis_flushed_while_jobs_are_queued(api: Api, clean_run: dict[str, Any]) -> None:
    job_ids = [api.post(kind, body).json()["jobId"] for kind, body in WORKLOAD]
    api.connection.flushall()
    assert api.status(job_ids[0]).json()["status"] == "PENDING"  # the durable record answers
    run_recovering_worker(api.settings, api.connection)
    assert [api.status(job_id).json()["status"] for job_id in job_ids] == ["COMPLETED"] * len(job_ids)
    assert snapshot(api.query, job_ids) == clean_run
    assert api.connection.zcard(OPEN_JOBS) == 0


@pytest.mark.parametrize("redis_lost", [False, True], ids=["queued", "redis-lost"])
def test_a_job_whose_upload_is_gone_fails_with_the_reason(api: Api, redis_lost: bool) -> None:
    job_id = api.post("suppliers", {"suppliers": [{"externalId": "S"}]}).json()["jobId"]
    kept = api.post("suppliers", {"suppliers": [{"externalId": "T"}]}).json()["jobId"]
    (api.settings.staging_dir / "acme" / f"{job_id}.parquet").unlink()
    if redis_lost:
        api.connection.flushall()
    run_recovering_worker(api.settings, api.connection)
    status = api.status(job_id).json()
    assert status["status"] == "FAILED" and status["completedAt"] is not None
    assert status["errors"][0]["row"] is None and "staged upload" in status["errors"][0]["message"]
    assert api.status(kept).json()["status"] == "COMPLETED"
    assert api.query("SELECT external_id FROM suppliers") == [("T",)]


# --- a full disk and an unwritable staging area, on a real API process -----------------------------

FILE_SIZE_LIMIT = 1 << 20
_PR_CAPBSET_DROP = 24
_FILE_MODE_CAPABILITIES = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def can_drop_capabilities() -> bool:
    """Root needs CAP_SETPCAP to give up overriding file modes; anyone else is bound by them already."""
    if os.geteuid() != 0:
        return True
    status = Path("/proc/self/status").read_text()
    effective = int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff")), 16)
    return bool(effective & (1 << 8))


def limited_process() -> Callable[[], None]:
    """A preexec_fn: files of at most 1 MiB, and file modes that bind even root."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, no signal death
        for capability in _FILE_MODE_CAPABILITIES:
            prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0)

    return limit


def test_a_full_disk_or_unwritable_staging_is_a_clear_5xx_that_keeps_nothing(
    stockyards: list[Stockyard], tmp_path: Path
) -> None:
    with external_redis(tmp_path / "redis") as server:
        stockyard = Stockyard(tmp_path / "stockyard", redis_url=server.url)
        stockyards.append(stockyard)
        api = stockyard.api(preexec_fn=limited_process())
        staging = stockyard.data_dir / "staging"

        def files() -> set[Path]:
            return {path for path in staging.rglob("*") if path.is_file()}

        big = {"suppliers": [{"externalId": f"SUPPLIER-{i:08d}"} for i in range(100_000)]}  # ~3.4 MB
        response = stockyard.post("suppliers", big)
        assert response.status_code == 507, response.text
        assert "insufficient storage" in response.json()["detail"] and "File too large" in response.json()["detail"]
        assert files() == set()
        small = {"suppliers": [{"externalId": "S"}]}
        assert stockyard.post("suppliers", small).status_code == 202  # still serving

        if can_drop_capabilities():
            globex = KeyStore(stockyard.data_dir / "keys.sqlite3").create("globex", [Scope.IMPORT_WRITE])[1]
            for directory, key in ((staging / "acme", stockyard.key), (staging, globex)):
                before = files()
                directory.chmod(0o555)
                try:
                    response = stockyard.post("suppliers", small, headers={"x-api-key": key})
                    assert response.status_code == 503, response.text
                    assert "not writable" in response.json()["detail"]
                    assert files() == before
                finally:
                    directory.chmod(0o755)
            assert stockyard.post("suppliers", small).status_code == 202
        assert api.popen.poll() is None
        assert "Traceback" not in api.output(), api.output()


def test_a_busy_warehouse_is_waited_for_never_a_failed_job(api: Api) -> None:
    """Another process holding the warehouse file is a transient error: the job is retried, in order."""
    first = api.post("suppliers", {"suppliers": [{"externalId": "A"}]}).json()["jobId"]
    second = api.post("suppliers", {"suppliers": [{"externalId": "B"}]}).json()["jobId"]
    warehouse_path = api.settings.data_dir / "warehouse.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; con = duckdb.connect({str(warehouse_path)!r}); print(1, flush=True); time.sleep(3)",
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"1"
        run_recovering_worker(api.settings, api.connection)
    finally:
        holder.kill()
        holder.wait()
    assert [api.status(job_id).json()["status"] for job_id in (first, second)] == ["COMPLETED", "COMPLETED"]
    jobs = api.query("SELECT job_id FROM import_jobs ORDER BY completed_at")
    assert jobs == [(first,), (second,)]


def test_recovery_applies_an_organizations_jobs_by_acceptance_sequence_even_after_a_clock_step_back(api: Api) -> None:
    """createdAt has millisecond resolution and follows the clock; the sequence number does not."""
    job_ids = [
        api.post("inventory", {"levels": [{"skuId": "P", "locationId": "L", "quantityOnHand": q}]}).json()["jobId"]
        for q in range(1, 7)
    ]
    for index, job_id in enumerate(job_ids):  # each accepted "earlier" than the one before: the clock went back
        path = api.settings.staging_dir / "acme" / f"{job_id}.json"
        record = json.loads(path.read_text())
        record["created_at"] = f"2026-12-01T12:00:0{9 - index}.000Z"
        path.write_text(json.dumps(record))
    api.connection.flushall()  # Redis lost the queue: recovery rebuilds it from the durable records
    run_recovering_worker(api.settings, api.connection)
    assert [api.status(job_id).json()["status"] for job_id in job_ids] == ["COMPLETED"] * 6
    assert api.query("SELECT quantity_on_hand, last_job_id FROM inventory_levels") == [(6.0, job_ids[-1])]
    committed = dict(api.query("SELECT job_id, completed_at FROM import_jobs"))
    in_acceptance_order = [committed[job_id] for job_id in job_ids]
    assert in_acceptance_order == sorted(in_acceptance_order)
