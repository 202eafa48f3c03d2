"""Cancelling a job: it ends FAILED with a `cancelled` error, and nothing of it is applied.

A job can be cancelled until it is applied. The cancel takes the organization's apply lock first (a lane
holds it for as long as it applies the organization's jobs), so it never races a merge: either the job
is committed already (409) or it never will be. A worker that is still preparing the job goes on, but its
result is not written over the ended record (service/job_store.py keeps an ended job ended); the applier
then writes the job's import_jobs row as FAILED, and the organization's later jobs go on in order.
"""

from __future__ import annotations

import time
from contextlib import ExitStack

from service.errors import ConflictError, NotFoundError, ServiceUnavailableError
from service.job import JobRecord, JobStatus, iso, utc_now
from service.job_files import apply_lock_path, try_lock
from service.job_store import JobStore
from service.prepare import count_failed
from service.queue import Queues
from service.webhooks import notify_job_ended

CANCELLED_MESSAGE = "cancelled at the client's request; nothing of it was applied"
LOCK_WAIT_SECONDS = 10.0
RETRY_AFTER_SECONDS = 5


def cancel_job(store: JobStore, queues: Queues, organization_id: str, job_id: str) -> JobRecord:
    """Cancel the job; ConflictError when it has ended already, ServiceUnavailableError when the
    organization's jobs are being applied and the lane does not let go in time."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    with ExitStack() as held:
        while not try_lock(apply_lock_path(store.settings.staging_dir, organization_id), held):
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    "the organization's jobs are being applied right now; try the cancel again in a few seconds",
                    retry_after=RETRY_AFTER_SECONDS,
                )
            time.sleep(0.05)
        with store.record_lock(organization_id):
            record = store.read_durable(organization_id, job_id)
            if record is None:
                raise NotFoundError(f"no job {job_id}", job_id=job_id)
            if not record.is_open:
                raise ConflictError(f"the job has ended already ({record.status}): it cannot be cancelled")
            record.status = JobStatus.FAILED.value
            record.completed_at = iso(utc_now())
            record.job_error = CANCELLED_MESSAGE
            record.job_error_code = "cancelled"
            record.processed_count = 0
            record.failed_count = record.row_count
            record.recorded = False
            record.waiting_reason = None
            notify_job_ended(store.settings, [record])
            store.write_durable(record)
        store.cache(record)
    count_failed(store.redis, record)
    queues.kick_apply(organization_id)  # the applier records it, and the jobs after it go on
    return record
