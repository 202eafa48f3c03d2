"""Recovery: every accepted job is finished, whatever happened to Redis or to the worker that had it.

The durable records under staging/{org}/ are the truth. Recovery compares them with Redis and puts
back what is missing: the cached record, both indexes (service/job_store.py), and the RQ job that
moves each unsettled job on:
- an open job that nobody prepares (its lock is free) and that is not prepared goes back to the front of
  its prepare queue. If a worker had it (PROCESSING), that worker died preparing it: after
  STOCKYARD_MAX_ATTEMPTS such deaths the job fails with the reason, so that a job that kills its
  worker (out of memory) cannot keep every other job waiting;
- a prepared job, or a FAILED one whose import_jobs row is not written, needs the applier: an apply job
  of its organization is queued, unless one is or a lane is at it;
- a job whose staged upload is gone cannot be finished: it becomes FAILED with the reason.

A full pass reads every durable record; it runs when a worker starts and whenever Redis is not the
one last reconciled (restarted, flushed, replaced), and until it has run the applier applies nothing
(the head of an organization is not known for sure). Between those, a quick pass reads only the open
jobs the Redis index names: it catches a job whose worker died within one recovery interval.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from service.files import remove_quietly
from service.job import JobRecord, JobStatus, acceptance_order
from service.job_files import JobFiles, apply_lock_path, is_locked
from service.job_store import OPEN_JOBS, JobStore, durable_records, organizations_with_unsettled_jobs
from service.kinds import KINDS
from service.prepare import fail_job, has_prepared, missing_upload, release_stale_reservations
from service.queue import Queues, job_id_of, queued_ids
from service.settings import Settings

RECONCILED = "stockyard:reconciled-with"
"""The run id of the Redis server that the last full pass reconciled; another run id means a full pass."""
PARTIAL_FILE_AGE_SECONDS = 3600
"""Leftovers of an upload interrupted by a crash (`*.body`, `*.tmp`) untouched this long are removed."""

logger = logging.getLogger("stockyard.recovery")


@dataclass
class RecoveryReport:
    full: bool
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    applying: list[str] = field(default_factory=list)
    removed_partial_files: int = 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def redis_run_id(connection: redis.Redis) -> str:
    return str(connection.info("server")["run_id"])


def needs_full_pass(connection: redis.Redis) -> bool:
    """Is this Redis not the one the last full pass reconciled (it restarted, was flushed or replaced)?"""
    reconciled = connection.get(RECONCILED)
    return reconciled is None or _text(reconciled) != redis_run_id(connection)


def recover_jobs(store: JobStore, settings: Settings, *, full: bool = False) -> RecoveryReport:
    """Put every unsettled job that nothing moves on back in motion; fail what cannot run."""
    queues = Queues(store.redis, settings)
    run_id = redis_run_id(store.redis)
    full = full or needs_full_pass(store.redis)
    report = RecoveryReport(full=full)
    needs_applier: set[str] = set()
    if full:
        records = sorted(durable_records(settings.staging_dir), key=acceptance_order)
        _restore_cache(store, records)
        report.removed_partial_files = _remove_partial_files(settings.staging_dir)
        unsettled = [record for record in records if not record.is_settled]
        needs_applier.update(record.organization_id for record in unsettled if not record.is_open)
        candidates = [record.index_member for record in unsettled if record.is_open]
    else:
        candidates = [_text(member) for member in store.redis.zrange(OPEN_JOBS, 0, -1)]
    waiting: list[JobRecord] = []
    unlocked: list[JobRecord] = []
    for member in candidates:
        organization_id, _, job_id = member.partition("/")
        try:
            locked = is_locked(JobFiles.of(settings.staging_dir, organization_id, job_id).lock)
        except (OSError, ValueError):  # not a job's name, or no job's place: read_durable finds none either
            locked = False
        if locked:
            report.running.append(job_id)
            continue
        current = store.read_durable(organization_id, job_id)  # read after the lock check
        if current is not None and current.is_open:
            unlocked.append(current)
        elif not full:
            store.redis.zrem(OPEN_JOBS, member)  # finished meanwhile, or removed
    unlocked.sort(key=acceptance_order)
    # their copies in Redis, each read after its job's lock check too, in one round trip
    try:
        copies = store.cached([record.job_id for record in unlocked if record.waiting_reason is None])
    except redis.RedisError:
        copies = {}  # then only the durable records say which jobs wait
    for current in unlocked:
        files = store.files(current)
        transient = _waiting(current, copies.get(current.job_id))
        if transient is not None and (transient.retry_at or 0) > time.time():
            continue  # transient trouble: tried again once its wait is over
        if current.prepared and has_prepared(files, KINDS[current.kind].contract.has_lines):
            needs_applier.add(current.organization_id)
            continue
        problem = _why_it_cannot_run(current, files)
        if problem is None and current.status == JobStatus.PROCESSING and not current.prepared and transient is None:
            current.attempts += 1  # a worker died preparing it (transient trouble does not count)
            if current.attempts >= settings.max_attempts:
                problem = (
                    f"import failed: preparing this job stopped its worker {current.attempts} times"
                    " (out of memory, or killed); it is not tried again"
                )
        if problem is not None:
            fail_job(store, queues, current, problem)
            report.failed.append(current.job_id)
            continue
        waiting.append(current)
    report.requeued = _queue_to_prepare(store, queues, waiting)
    report.applying = sorted(needs_applier)
    for organization_id in report.applying:
        if not is_locked(apply_lock_path(settings.staging_dir, organization_id)):
            queues.kick_apply(organization_id)
    if not full:
        _ask_for_waiting_organizations(store, queues, settings)
    release_stale_reservations(store.redis, lambda job_id: _is_being_prepared(store, settings, job_id))
    if full:
        store.redis.set(RECONCILED, run_id)
    if report.requeued:
        pass_name = "full" if full else "quick"
        logger.warning(
            "recovery (%s pass): re-queued %d accepted job(s) %s",
            pass_name,
            len(report.requeued),
            _some(report.requeued),
        )
    if report.failed:
        logger.warning("recovery: %d job(s) failed: %s", len(report.failed), _some(report.failed))
    return report


def _waiting(record: JobRecord, copy: JobRecord | None) -> JobRecord | None:
    """The state of an open job if it waits after transient trouble, else None: its durable `record` says
    so, or only its `copy` in Redis does (the disk was full), where the copy is of the same phase (JobStore.get)."""
    if record.waiting_reason is not None:
        return record
    live = copy is not None and copy.is_open and copy.prepared == record.prepared
    return copy if live and copy is not None and copy.waiting_reason is not None else None


def _why_it_cannot_run(record: JobRecord, files: JobFiles) -> str | None:
    kind = KINDS.get(record.kind)
    if kind is None:
        return f"import failed: unknown import kind {record.kind!r}"
    return missing_upload(kind.contract, files)


def _is_being_prepared(store: JobStore, settings: Settings, job_id: str) -> bool:
    cached = store.redis.hget(store.cache_key(job_id), "organization_id")
    if cached is None:
        return False
    organization_id = _text(cached).strip('"')
    return is_locked(JobFiles.of(settings.staging_dir, organization_id, job_id).lock)


def _some(job_ids: list[str]) -> str:
    return ", ".join(job_ids[:10]) + (f" and {len(job_ids) - 10} more" if len(job_ids) > 10 else "")


def _ask_for_waiting_organizations(store: JobStore, queues: Queues, settings: Settings) -> None:
    """Every organization with unsettled jobs and no lane at it gets an apply job (queue.kick_apply keeps
    it to one a minute): an apply job lost with a dead applier is asked for again."""
    for organization_id in organizations_with_unsettled_jobs(store.redis):
        if not is_locked(apply_lock_path(settings.staging_dir, organization_id)):
            queues.kick_apply(organization_id)


def _restore_cache(store: JobStore, records: list[JobRecord]) -> None:
    """Copy to Redis each record it lost or holds an older state of, and bring both indexes in step."""
    with store.redis.pipeline(transaction=False) as pipe:
        for record in records:
            pipe.hmget(store.cache_key(record.job_id), ["status", "prepared", "recorded"])
        cached = pipe.execute()
    with store.redis.pipeline(transaction=False) as pipe:
        for record, (status, prepared, recorded) in zip(records, cached, strict=True):
            current = tuple(value.encode() for value in (f'"{record.status}"', str(record.prepared).lower(),
                                                                 str(record.recorded).lower()))  # fmt: skip
            if not record.is_settled or (status, prepared, recorded) != current:  # an unsettled one: its indexes too
                store.cache(record, pipeline=pipe)
        pipe.execute()
    kept = {record.index_member for record in records if record.is_open}
    for member in store.redis.zrange(OPEN_JOBS, 0, -1):
        if _text(member) not in kept:  # accepted since the scan, finished, or gone?
            organization_id, _, job_id = _text(member).partition("/")
            indexed = store.read_durable(organization_id, job_id)
            if indexed is None or not indexed.is_open:
                store.redis.zrem(OPEN_JOBS, _text(member))


def _queue_to_prepare(store: JobStore, queues: Queues, waiting: list[JobRecord]) -> list[str]:
    """Queue each waiting job that is not queued already, at the front of its prepare queue, oldest first."""
    if not waiting:
        return []
    queued: set[str] = set()
    for queue in (queues.prepare, queues.prepare_large):
        queued.update(job_id for job_id in map(job_id_of, queued_ids(queue)) if job_id)
    requeued = []
    for record in reversed(waiting):  # each goes to the front: the oldest ends up first
        if record.job_id in queued and record.status == JobStatus.PENDING:
            continue
        store.update(record, status=JobStatus.PENDING.value, started_at=None, processed_count=0)
        queues.enqueue_prepare(record, again=True)
        requeued.append(record.job_id)
    return list(reversed(requeued))


def _remove_partial_files(staging_dir: Path) -> int:
    """Remove what an interrupted upload or write left behind: request bodies, temporary files, and bodies
    kept for a worker (service/staging/large_json.py) whose job was never recorded (the API died first)."""
    cutoff = time.time() - PARTIAL_FILE_AGE_SECONDS
    removed = 0
    for pattern in ("*/*.body", "*/*.tmp", "*/*.upload.json"):
        for path in staging_dir.glob(pattern):
            if path.name.endswith(".upload.json") and path.with_name(path.name.split(".")[0] + ".json").exists():
                continue  # its job's to stage
            try:
                if path.stat().st_mtime < cutoff:
                    remove_quietly(path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed
