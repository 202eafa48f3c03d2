"""Recovery: every accepted job is finished, whatever happened to Redis or to the worker that had it.

The durable records under staging/{org}/ are the truth. Recovery compares them with Redis and puts
back what is missing: the cached record, the index of open jobs, and the queue entry of every open job
that no live process is running. Re-queued jobs go to the front of the queue in acceptance order
(createdAt), ahead of anything accepted later, so an organization's jobs still apply in order. A job
whose staged upload is gone cannot be finished: it becomes FAILED with the reason.

A full pass reads every durable record; it runs when a worker starts and whenever Redis is not the
one last reconciled (restarted, flushed, replaced). Between those, a quick pass reads only the open
jobs that the Redis index names: it catches a job whose worker died (its lock is free, it is PROCESSING
and not queued) within one recovery interval.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from rq.job import Job

from contracts import CONTRACTS
from service.jobs import (
    OPEN_JOBS,
    JobRecord,
    JobStatus,
    JobStore,
    acceptance_score,
    fail_job,
    job_id_of,
    job_is_running,
)
from service.settings import Settings
from service.staging import JOB_ID_PATTERN, remove_quietly, staged_paths

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
    removed_partial_files: int = 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def redis_run_id(connection: redis.Redis) -> str:
    return str(connection.info("server")["run_id"])


def needs_full_pass(connection: redis.Redis) -> bool:
    """Is this Redis not the one the last full pass reconciled (it restarted, was flushed or replaced)?"""
    reconciled = connection.get(RECONCILED)
    return reconciled is None or _text(reconciled) != redis_run_id(connection)


def _open_index(connection: redis.Redis) -> list[tuple[str, str]]:
    """(organization, job id) of each job the Redis index says is open."""
    members = [_text(member) for member in connection.zrange(OPEN_JOBS, 0, -1)]
    return [(member.partition("/")[0], member.partition("/")[2]) for member in members]


def _queue_entries(pipe: Any, key: str) -> list[str]:
    return [_text(entry) for entry in pipe.lrange(key, 0, -1)]


def recover_jobs(store: JobStore, settings: Settings, *, full: bool = False) -> RecoveryReport:
    """Put every open job that nobody runs back on the queue, in acceptance order; fail what cannot run."""
    run_id = redis_run_id(store.redis)
    full = full or needs_full_pass(store.redis)
    report = RecoveryReport(full=full)
    if full:
        records = list(_durable_records(settings.staging_dir))
        _restore_cache(store, records)
        report.removed_partial_files = _remove_partial_files(settings.staging_dir)
    else:
        records = _indexed_open_records(store)
    waiting: list[JobRecord] = []
    for record in sorted((r for r in records if r.is_open), key=lambda r: (acceptance_score(r), r.job_id)):
        paths = staged_paths(settings.staging_dir, record.organization_id, record.job_id)
        if job_is_running(paths["lock"]):
            report.running.append(record.job_id)
            continue
        current = store.read_durable(record.organization_id, record.job_id)  # read after the lock check
        if current is None or not current.is_open:
            continue
        contract = CONTRACTS.get(current.kind)
        needed = [paths["rows"]] + ([paths["lines"]] if contract is not None and contract.has_lines else [])
        if contract is None or not all(path.exists() for path in needed):
            missing = ", ".join(p.name for p in needed if not p.exists())
            reason = (
                f"import failed: the staged upload of this job is missing ({missing})"
                if contract is not None
                else f"import failed: unknown import kind {current.kind!r}"
            )
            fail_job(store, settings, current, reason)
            report.failed.append(current.job_id)
            logger.warning("job %s cannot be finished: %s", current.job_id, reason)
            continue
        waiting.append(current)
    report.requeued = _queue_in_order(store, waiting)
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
        logger.warning("recovery: %d job(s) failed, their upload is gone: %s", len(report.failed), _some(report.failed))
    return report


def _some(job_ids: list[str]) -> str:
    return ", ".join(job_ids[:10]) + (f" and {len(job_ids) - 10} more" if len(job_ids) > 10 else "")


def _durable_records(staging_dir: Path) -> list[JobRecord]:
    records = []
    for path in staging_dir.glob("*/*.json"):
        if not JOB_ID_PATTERN.match(path.stem):
            continue
        record = JobRecord.from_durable(path)
        # a record is trusted only where its own path puts it
        if record is not None and record.job_id == path.stem and record.organization_id == path.parent.name:
            records.append(record)
    return records


def _indexed_open_records(store: JobStore) -> list[JobRecord]:
    records = []
    for organization_id, job_id in _open_index(store.redis):
        record = store.read_durable(organization_id, job_id)
        if record is None or not record.is_open:
            store.redis.zrem(OPEN_JOBS, f"{organization_id}/{job_id}")  # finished meanwhile, or removed
            continue
        records.append(record)
    return records


def _restore_cache(store: JobStore, records: list[JobRecord]) -> None:
    """Copy to Redis each record it lost or holds an older state of, and bring the open-jobs index in step."""
    with store.redis.pipeline(transaction=False) as pipe:
        for record in records:
            pipe.hget(store.cache_key(record.job_id), "status")
        cached_statuses = pipe.execute()
    open_members = {record.index_member for record in records if record.is_open}
    with store.redis.pipeline(transaction=False) as pipe:
        for record, cached in zip(records, cached_statuses, strict=True):
            if cached is None or (not record.is_open and _text(cached) != f'"{record.status}"'):
                store.cache(record, pipeline=pipe)
            elif record.is_open:
                pipe.zadd(OPEN_JOBS, {record.index_member: acceptance_score(record)})
        pipe.execute()
    for organization_id, job_id in _open_index(store.redis):
        if f"{organization_id}/{job_id}" not in open_members:  # accepted since the scan, finished, or gone?
            indexed = store.read_durable(organization_id, job_id)
            if indexed is None or not indexed.is_open:
                store.redis.zrem(OPEN_JOBS, f"{organization_id}/{job_id}")


def _queue_in_order(store: JobStore, waiting: list[JobRecord]) -> list[str]:
    """Make the waiting jobs the head of the queue, in acceptance order; return the ids re-queued.

    Nothing is touched when they already stand there in that order. Otherwise their old entries are
    removed and new ones pushed at the front in one transaction, so that no worker dequeues in between.
    """
    if not waiting:
        return []
    queue = store.queue()
    wanted = [record.job_id for record in waiting]
    wanted_set = set(wanted)
    with store.redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(queue.key)  # type: ignore[no-untyped-call]
                entries = _queue_entries(pipe, queue.key)
                queued = [job_id_of(entry) for entry in entries]
                if list(dict.fromkeys(job_id for job_id in queued if job_id in wanted_set)) == wanted:
                    pipe.unwatch()
                    return []
                break
            except redis.WatchError:
                continue
    for record in waiting:
        if record.status != JobStatus.PENDING:  # PENDING again: queued, and nobody has it
            store.update(record, status=JobStatus.PENDING.value, started_at=None, processed_count=0)
    with store.redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(queue.key)  # type: ignore[no-untyped-call]
                entries = _queue_entries(pipe, queue.key)
                pipe.multi()
                for entry in entries:
                    if job_id_of(entry) in wanted_set:
                        pipe.lrem(queue.key, 0, entry)
                        pipe.delete(Job.key_for(entry))
                for record in reversed(waiting):  # each push goes to the front: the oldest ends up first
                    store.enqueue(record, retry=True, pipeline=pipe)
                pipe.execute()
                return wanted
            except redis.WatchError:
                continue


def _remove_partial_files(staging_dir: Path) -> int:
    """Remove what an interrupted upload or write left behind: request bodies and temporary files."""
    cutoff = time.time() - PARTIAL_FILE_AGE_SECONDS
    removed = 0
    for pattern in ("*/*.body", "*/*.tmp"):
        for path in staging_dir.glob(pattern):
            try:
                if path.stat().st_mtime < cutoff:
                    remove_quietly(path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed
