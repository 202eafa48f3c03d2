"""The RQ queues a job goes through, and the two kinds of RQ job on them.

- `{prefix}-prepare` and `{prefix}-prepare-large`: `prepare-{jobId}` runs service.prepare.prepare_import.
  Workers take small jobs first, so a large one never keeps small ones waiting for a worker.
- `{prefix}-apply`: `apply-{org}-{token}` runs service.apply.apply_organization, which applies the
  organization's prepared jobs in acceptance order. One is queued per organization at a time (the
  `apply-kick` key): asking again while one waits changes nothing, since it will see every prepared job.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import redis
import rq
import rq.job
from redis.client import Pipeline

from service.job import JobRecord
from service.job_store import SCAN_PAGE
from service.settings import Settings

PREPARE_PREFIX = "prepare-"
APPLY_PREFIX = "apply-"
_APPLY_KICK = "stockyard:apply-kick:{}"
APPLY_KICK_SECONDS = 60
"""How long a queued apply job keeps others of its organization from being queued; the applier clears it
when it starts, and recovery asks again after it, should the applier have died holding it."""


@dataclass(frozen=True)
class Queues:
    connection: redis.Redis
    settings: Settings

    @property
    def prepare(self) -> rq.Queue:
        return rq.Queue(f"{self.settings.queue_name}-prepare", connection=self.connection)

    @property
    def prepare_large(self) -> rq.Queue:
        return rq.Queue(f"{self.settings.queue_name}-prepare-large", connection=self.connection)

    @property
    def apply(self) -> rq.Queue:
        return rq.Queue(f"{self.settings.queue_name}-apply", connection=self.connection)

    def prepare_queue_for(self, record: JobRecord) -> rq.Queue:
        return self.prepare if record.row_count <= self.settings.group_max_rows else self.prepare_large

    def enqueue_prepare(self, record: JobRecord, *, again: bool = False, pipeline: Pipeline | None = None) -> None:
        """Queue the job to be prepared: at the back when accepted, at the front when queued again (it was
        accepted earlier than whatever waits)."""
        suffix = f"-{secrets.token_hex(4)}" if again else ""
        self.prepare_queue_for(record).enqueue_call(
            "service.prepare.prepare_import",
            args=(record.job_id, record.organization_id),
            job_id=f"{PREPARE_PREFIX}{record.job_id}{suffix}",
            timeout=self.settings.job_timeout_seconds,
            result_ttl=0,  # the outcome is in the job's record, not in RQ
            failure_ttl=7 * 24 * 3600,
            at_front=again,
            pipeline=pipeline,
        )

    def kick_apply(self, organization_id: str) -> bool:
        """Ask the applier to apply what is ready of the organization; False when an apply job of it is
        queued already."""
        if not self.connection.set(_APPLY_KICK.format(organization_id), 1, nx=True, ex=APPLY_KICK_SECONDS):
            return False
        self.apply.enqueue_call(
            "service.apply.apply_organization",
            args=(organization_id,),
            job_id=f"{APPLY_PREFIX}{organization_id}-{secrets.token_hex(4)}",
            timeout=self.settings.job_timeout_seconds,
            result_ttl=0,
            failure_ttl=7 * 24 * 3600,
        )
        return True

    def clear_kick(self, organization_id: str) -> None:
        """The apply job of the organization has started: a job prepared from now on asks again."""
        self.connection.delete(_APPLY_KICK.format(organization_id))

    def clear_all_kicks(self) -> None:
        for key in self.connection.scan_iter(_APPLY_KICK.format("*"), count=SCAN_PAGE):
            self.connection.delete(key)


def job_id_of(rq_job_id: str) -> str | None:
    """The import job a prepare RQ job runs: `prepare-{jobId}`, or `prepare-{jobId}-{token}` when queued again."""
    if not rq_job_id.startswith(PREPARE_PREFIX):
        return None
    return rq_job_id[len(PREPARE_PREFIX) :].split("-", 1)[0]


def take_from_queue(queue: rq.Queue, rq_job_id: str) -> bool:
    """Take one queued RQ job off its queue, as a worker would dequeue it; False if another took it first."""
    if not queue.connection.lrem(queue.key, 1, rq_job_id):
        return False
    queue.connection.delete(rq.job.Job.key_for(rq_job_id))
    return True


def queued_ids(queue: rq.Queue, limit: int | None = None) -> list[str]:
    """The RQ job ids waiting in the queue, the first `limit` of them (None: all)."""
    entries = queue.connection.lrange(queue.key, 0, -1 if limit is None else limit - 1)
    return [e.decode() if isinstance(e, bytes) else str(e) for e in entries]
