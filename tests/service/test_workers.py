"""Many workers, fair to every organization: real `serve` processes, real kills, the warehouse checked after.

No timings are asserted: each test makes one job slow on purpose (the test hooks of service/hooks.py)
and checks what must have happened meanwhile, or what the warehouse holds after.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.service.processes import Stockyard, children_of, wait_for

pytestmark = pytest.mark.slow

ORGANIZATIONS = ["acme", "globex", "initech"]


@pytest.fixture
def stockyard(tmp_path: Path) -> Any:
    created = Stockyard(tmp_path / "stockyard")
    yield created
    created.cleanup()


def suppliers(count: int, prefix: str = "S") -> dict[str, Any]:
    return {"suppliers": [{"externalId": f"{prefix}{i}"} for i in range(count)]}


def levels(quantity: int, skus: int = 5) -> dict[str, Any]:
    return {"levels": [{"skuId": f"P{i}", "locationId": "WH1", "quantityOnHand": quantity} for i in range(skus)]}


def is_open(stockyard: Stockyard, job_id: str, organization: str = "acme") -> bool:
    return stockyard.status(job_id, organization)["status"] in ("PENDING", "PROCESSING")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_small_job_of_another_organization_completes_while_a_large_one_is_prepared(
    stockyard: Stockyard, workers: str
) -> None:
    """Even with one worker: between two chunks of the large job, it prepares the small one."""
    serve = stockyard.serve(
        STOCKYARD_WORKERS=workers,
        STOCKYARD_GROUP_MAX_ROWS="100",
        STOCKYARD_VALIDATION_CHUNK_ROWS="100",
        STOCKYARD_TEST_PREPARE_DELAY="0.5",  # 10 chunks: about five seconds of preparing
    )
    large = stockyard.accept("suppliers", suppliers(1000, "L"))
    wait_for(lambda: f"prepare of job {large} paused" in serve.output(), 30, "the large job to be prepared")
    small = stockyard.accept("suppliers", suppliers(10), organization="globex")
    (done,) = stockyard.wait_finished([small], organization="globex")
    assert done["status"] == "COMPLETED"
    assert is_open(stockyard, large)  # the small one did not wait for it
    assert stockyard.wait_finished([large])[0]["status"] == "COMPLETED"
    counts = stockyard.query("SELECT organization_id, count(*) FROM suppliers GROUP BY 1 ORDER BY 1", after=[large])
    assert counts == [("acme", 1000), ("globex", 10)]


def test_a_small_job_of_another_organization_completes_while_a_large_one_is_merged(stockyard: Stockyard) -> None:
    """The applier merges organizations in lanes of their own: one transaction open does not block another."""
    serve = stockyard.serve(STOCKYARD_TEST_MERGE_DELAY="8")  # the applier's first merge holds its COMMIT
    large = stockyard.accept("suppliers", suppliers(2000, "L"))
    wait_for(lambda: f"merge of job {large} paused" in serve.output(), 30, "the large job's merge")
    small = stockyard.accept("suppliers", suppliers(10), organization="globex")
    (done,) = stockyard.wait_finished([small], organization="globex")
    assert done["status"] == "COMPLETED"
    assert is_open(stockyard, large)  # still in its transaction
    assert stockyard.wait_finished([large])[0]["status"] == "COMPLETED"


def test_jobs_of_one_organization_are_applied_in_acceptance_order_whatever_order_they_are_prepared_in(
    stockyard: Stockyard,
) -> None:
    """A large job is prepared slowly while small ones accepted after it are prepared at once: the small
    ones wait for it, and the last one accepted wins."""
    serve = stockyard.serve(
        STOCKYARD_GROUP_MAX_ROWS="3",
        STOCKYARD_VALIDATION_CHUNK_ROWS="2",
        STOCKYARD_TEST_PREPARE_DELAY="0.5",
    )
    first = stockyard.accept("inventory", levels(1, skus=8))  # large: prepared a chunk at a time
    wait_for(lambda: f"prepare of job {first} paused" in serve.output(), 30, "the first job to be prepared")
    later = [stockyard.accept("inventory", levels(quantity, skus=1)) for quantity in (2, 3)]
    wait_for(lambda: all(stockyard.status(job)["failedCount"] == 0 for job in later), 10, "the small jobs")
    statuses = stockyard.wait_finished([first, *later])
    assert [s["status"] for s in statuses] == ["COMPLETED"] * 3
    completed = [s["completedAt"] for s in statuses]
    assert completed == sorted(completed)  # applied in the order accepted
    rows = stockyard.query("SELECT sku_id, quantity_on_hand, last_job_id FROM inventory_levels ORDER BY 1", after=later)
    assert rows[0] == ("P0", 3.0, later[1])  # the last accepted wins, though prepared before the first
    assert rows[1:] == [(f"P{i}", 1.0, first) for i in range(1, 8)]


def test_kill_9_of_a_worker_while_it_prepares_prepares_the_job_again(stockyard: Stockyard) -> None:
    serve = stockyard.serve(
        STOCKYARD_WORKERS="1",
        STOCKYARD_GROUP_MAX_ROWS="100",
        STOCKYARD_VALIDATION_CHUNK_ROWS="100",
        STOCKYARD_TEST_PREPARE_DELAY="0.3",
    )
    job = stockyard.accept("suppliers", suppliers(1000))
    wait_for(lambda: f"prepare of job {job} paused" in serve.output(), 30, "the job to be prepared")
    (worker,) = children_of(serve.pid, "service.cli worker")
    os.killpg(worker, signal.SIGKILL)
    (done,) = stockyard.wait_finished([job], timeout=90)
    assert done["status"] == "COMPLETED" and done["failedCount"] == 0
    assert "The worker exited with -9" in serve.output()
    assert f"re-queued 1 accepted job(s) {job}" in serve.output()
    assert stockyard.query("SELECT count(*) FROM suppliers", after=[job]) == [(1000,)]
    assert stockyard.query("SELECT count(*) FROM import_jobs") == [(1,)]


def test_a_job_that_keeps_killing_its_worker_fails_with_the_reason_and_the_others_go_on(stockyard: Stockyard) -> None:
    """As a job that runs its worker out of memory would: after STOCKYARD_MAX_ATTEMPTS deaths it fails."""
    serve = stockyard.serve(
        STOCKYARD_WORKERS="1",
        STOCKYARD_MAX_ATTEMPTS="2",
        STOCKYARD_GROUP_MAX_ROWS="100",
        STOCKYARD_VALIDATION_CHUNK_ROWS="100",
        STOCKYARD_TEST_PREPARE_DELAY="0.5",
    )
    deadly = stockyard.accept("suppliers", suppliers(1000))
    other = stockyard.accept("suppliers", suppliers(3, "O"), organization="globex")
    for death in range(2):
        wait_for(
            lambda death=death: serve.output().count(f"prepare of job {deadly} paused") > death, 60, "its preparation"
        )
        (worker,) = wait_for(lambda: children_of(serve.pid, "service.cli worker"), 30, "the worker")
        os.killpg(worker, signal.SIGKILL)
    (failed,) = stockyard.wait_finished([deadly], timeout=90)
    assert failed["status"] == "FAILED" and failed["completedAt"] is not None
    assert failed["errors"][0]["row"] is None and "stopped its worker 2 times" in failed["errors"][0]["message"]
    assert stockyard.wait_finished([other], organization="globex")[0]["status"] == "COMPLETED"
    assert serve.popen.poll() is None  # serve kept going, and so did its API
    rows = stockyard.query("SELECT type, status, row_count FROM import_jobs ORDER BY status", after=[deadly, other])
    assert rows == [("suppliers", "COMPLETED", 3), ("suppliers", "FAILED", 1000)]


def test_large_jobs_wait_for_the_rows_in_flight(stockyard: Stockyard) -> None:
    """Two workers, two large jobs, room for one at a time: the second waits, then both complete."""
    serve = stockyard.serve(
        STOCKYARD_PREPARE_ROWS_IN_FLIGHT="150",
        STOCKYARD_GROUP_MAX_ROWS="10",
        STOCKYARD_VALIDATION_CHUNK_ROWS="20",
        STOCKYARD_TEST_PREPARE_DELAY="0.4",
    )
    first = stockyard.accept("suppliers", suppliers(100, "A"))
    wait_for(lambda: f"prepare of job {first} paused" in serve.output(), 30, "the first job to be prepared")
    second = stockyard.accept("suppliers", suppliers(100, "B"), organization="globex")
    wait_for(lambda: f"job {second} (100 rows) waits" in serve.output(), 30, "the second job to wait")
    assert stockyard.status(second, "globex")["status"] == "PENDING"
    assert is_open(stockyard, first)
    assert stockyard.wait_finished([first])[0]["status"] == "COMPLETED"
    assert stockyard.wait_finished([second], organization="globex")[0]["status"] == "COMPLETED"


def test_random_kill_9_of_workers_loses_nothing_applies_nothing_twice_and_keeps_each_organizations_order(
    stockyard: Stockyard,
) -> None:
    """Three workers, three organizations posting jobs whose outcome depends on their order, a worker
    killed at random every 0.4-0.9 s (preparing, applying, or in between): every job completes once."""
    serve = stockyard.serve(
        STOCKYARD_WORKERS="3",
        STOCKYARD_GROUP_MAX_ROWS="4",  # jobs of 5 rows are large: prepared alone, in chunks
        STOCKYARD_VALIDATION_CHUNK_ROWS="2",
        STOCKYARD_MAX_ATTEMPTS="1000",  # these kills are not the job's fault
    )
    accepted: dict[str, list[str]] = {organization: [] for organization in ORGANIZATIONS}
    stop = threading.Event()
    kills: list[int] = []

    def killer() -> None:
        chooser = random.Random(7)
        while not stop.wait(chooser.uniform(0.4, 0.9)):
            workers = children_of(serve.pid, "service.cli worker")
            if workers:
                victim = chooser.choice(workers)
                os.killpg(victim, signal.SIGKILL)
                kills.append(victim)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        for round_ in range(12):
            for organization in ORGANIZATIONS:
                skus = 5 if round_ % 3 == 0 else 1  # every third job large
                accepted[organization].append(stockyard.accept("inventory", levels(round_, skus), organization))
            time.sleep(0.25)
        time.sleep(3)
    finally:
        stop.set()
        thread.join()
    assert len(kills) >= 8
    for organization, job_ids in accepted.items():
        statuses = stockyard.wait_finished(job_ids, timeout=120, organization=organization)
        assert [s["status"] for s in statuses] == ["COMPLETED"] * len(job_ids), statuses
    every = [job_id for job_ids in accepted.values() for job_id in job_ids]
    jobs = stockyard.query("SELECT job_id, organization_id, completed_at FROM import_jobs", after=every)
    assert sorted(row[0] for row in jobs) == sorted(every)  # each job applied exactly once
    for organization, job_ids in accepted.items():
        committed = {job_id: completed for job_id, owner, completed in jobs if owner == organization}
        in_acceptance_order = [committed[job_id] for job_id in job_ids]
        assert in_acceptance_order == sorted(in_acceptance_order), organization  # applied in order
        rows = stockyard.query(
            "SELECT sku_id, quantity_on_hand, last_job_id FROM inventory_levels WHERE organization_id = ? ORDER BY 1",
            [organization],
        )
        # P0 was last written by the last job; P1-P4 by the last large one (round 9)
        assert rows == [("P0", 11.0, job_ids[11]), *((f"P{i}", 9.0, job_ids[9]) for i in range(1, 5))]
