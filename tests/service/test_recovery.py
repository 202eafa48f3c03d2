"""service/recovery.py's quick pass, in process: which open jobs it puts back in motion, and which it leaves."""

from __future__ import annotations

import time

from service.job import JobStatus
from service.job_store import OPEN_JOBS, JobStore
from service.queue import PREPARE_PREFIX, Queues, job_id_of, queued_ids, take_from_queue
from service.recovery import RECONCILED, recover_jobs, redis_run_id
from tests.conftest import Api


def test_a_quick_pass_queues_again_a_dead_workers_job_and_leaves_one_that_waits_out_transient_trouble(
    api: Api,
) -> None:
    levels = [{"levels": [{"skuId": f"S{n}", "locationId": "WH1", "quantityOnHand": 1}]} for n in range(3)]
    waits, died, queued = (api.post("inventory", body).json()["jobId"] for body in levels)
    store, queues = JobStore(api.connection, api.settings), Queues(api.connection, api.settings)
    for job_id in (waits, died):  # taken off the queue by a worker, which then...
        assert take_from_queue(queues.prepare, f"{PREPARE_PREFIX}{job_id}")
    store.update(store.get(died), status=JobStatus.PROCESSING.value)  # ... died preparing it, or...
    changes = {"waiting_reason": "the disk is full; tried again in 600 s", "retry_at": time.time() + 600}
    store.update(store.get(waits), durable=False, **changes)  # ... wrote that it waits, where it could: Redis

    api.connection.set(RECONCILED, redis_run_id(api.connection))  # this Redis is reconciled: a quick pass
    report = recover_jobs(store, api.settings)

    assert not report.full
    assert report.requeued == [died]
    assert store.read_durable("acme", died).attempts == 1
    assert store.read_durable("acme", waits).attempts == 0
    assert sorted(job_id_of(rq_job) for rq_job in queued_ids(queues.prepare)) == sorted([died, queued])
    assert api.status(waits).json()["status"] == "PENDING"


def test_a_quick_pass_drops_from_the_index_what_names_no_job_and_goes_on(api: Api) -> None:
    """A member of the open jobs' index that names no readable job (an organization that is a file, say)
    is dropped, and does not stop the pass for the jobs after it."""
    job_id = api.post("inventory", {"levels": [{"skuId": "S1", "locationId": "WH1"}]}).json()["jobId"]
    store, queues = JobStore(api.connection, api.settings), Queues(api.connection, api.settings)
    assert take_from_queue(queues.prepare, f"{PREPARE_PREFIX}{job_id}")  # lost by a worker that died
    (api.settings.staging_dir / "not-a-directory").write_text("")
    strays = [f"not-a-directory/{'0' * 32}", "no/such/job", f"acme/{'f' * 32}"]
    api.connection.zadd(OPEN_JOBS, dict.fromkeys(strays, 0.0))
    api.connection.set(RECONCILED, redis_run_id(api.connection))

    report = recover_jobs(store, api.settings)

    assert report.requeued == [job_id]
    assert api.connection.zrange(OPEN_JOBS, 0, -1) == [f"acme/{job_id}".encode()]
