"""Applying jobs: each organization's prepared jobs merged into the warehouse, in acceptance order.

The apply RQ job (service/queue.py) names an organization, and a lane of the applier
(service/applier.py) runs it: it takes the organization's lock (`apply.lock`), then, as long as the
first unsettled job of the organization is ready (prepared, or FAILED and its import_jobs row not yet
written), applies the run of ready jobs at the head in one transaction. Lanes of other organizations
run at the same time, each in a transaction of its own: no organization waits for another's merge.

A transaction costs about the same whatever few small jobs it merges, so a run of small jobs takes along
the runs of the same kind that other organizations have ready, whose apply jobs wait in the queue and
whose locks no lane holds (`join_waiting`): one transaction for all of them, each organization's jobs
still in its order. Their organizations are asked about again once their locks are let go.

A run is the ready jobs at the head up to the first that is not prepared yet: one large job, or small
jobs of one kind up to STOCKYARD_GROUP_MAX_ROWS rows and STOCKYARD_GROUP_MAX_JOBS jobs, merged as if
one after the other (warehouse.combine_jobs); FAILED jobs in it add their import_jobs rows. A job that
is committed already (its import_jobs row says so) is never merged again: a lane killed between the
COMMIT and the records' update leaves nothing to apply twice.

Should a run of several jobs fail, each is applied alone, so that one bad job fails alone. Transient
trouble (the disk, a conflict, Redis) leaves everything as it was; the lane waits and tries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import redis

from service import hooks, logs, metrics
from service.errors import TransientError
from service.job import JobRecord, JobStatus, iso, parse_iso
from service.job_files import apply_lock_path, release_ended, try_lock
from service.kinds import KINDS
from service.prepare import fail_job, is_transient, read_prepared, stored_prepared, transient_reason
from service.queue import APPLY_PREFIX, queued_ids
from service.warehouse import KindTables, Merged, applied_at, apply_jobs, count_changes
from service.webhooks import notify_job_ended
from transforms import Prepared

if TYPE_CHECKING:
    from service.applier import Applier

TRANSIENT_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
"""A lane that hits transient trouble waits this long, doubling up to MAX_BACKOFF_SECONDS, then retries."""

logger = logging.getLogger("stockyard.apply")


@dataclass
class Run:
    """Ready jobs at the head of an organization: prepared ones to merge, failed ones to record."""

    jobs: list[JobRecord] = field(default_factory=list)
    failed: list[JobRecord] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.jobs or self.failed)


def apply_organization(organization_id: str) -> int:
    """The apply RQ job: apply what is ready of the organization, in order; how many jobs it settled."""
    from service.applier import current_applier

    applier = current_applier()
    applier.queues.clear_kick(organization_id)
    settled = 0
    backoff = TRANSIENT_BACKOFF_SECONDS
    while True:
        try:
            with ExitStack() as held:
                if not try_lock(apply_lock_path(applier.settings.staging_dir, organization_id), held):
                    return settled  # another lane has the organization; it looks again once it lets go
                while (run := ready_run(applier, organization_id)) and not applier.stopping.is_set():
                    with ExitStack() as theirs:
                        joined: list[str] = []
                        theirs.callback(_ask_again, applier, joined)  # last: once their locks are let go
                        joined += join_waiting(applier, organization_id, run, theirs)
                        try:
                            settled += apply_run(applier, run)
                        except Exception as error:
                            if is_transient(error):
                                reason = f"{transient_reason(error)}; tried again in {backoff:.0f} s"
                                _show_waiting(applier, run, reason)
                            raise
                    backoff = TRANSIENT_BACKOFF_SECONDS
            # a job may have become ready after the last look and before the lock was let go: its own
            # apply job found the lock taken, so look again now that it is free
            if applier.stopping.is_set() or not ready_run(applier, organization_id):
                return settled
        except Exception as error:
            if not is_transient(error):
                raise
            logger.warning("applying jobs of %s interrupted (%s); retrying in %.0f s", organization_id, error, backoff)
            if applier.stopping.wait(backoff):
                return settled
            backoff = min(2 * backoff, MAX_BACKOFF_SECONDS)


def join_waiting(applier: Applier, organization_id: str, run: Run, held: ExitStack) -> list[str]:
    """Add to a run of small jobs the ready runs of that kind of the organizations whose apply jobs wait
    in the queue, within the group's limits, holding their locks in `held`; the organizations joined."""
    settings = applier.settings
    if not run.jobs or run.jobs[0].dry_run or run.jobs[0].row_count > settings.group_max_rows:
        return []
    kind, rows = run.jobs[0].kind, sum(record.row_count for record in run.jobs)
    joined: list[str] = []
    for other in waiting_organizations(applier, settings.group_max_jobs):
        if other == organization_id or other in joined or len(run.jobs) >= settings.group_max_jobs:
            continue
        with ExitStack() as lock:
            if not try_lock(apply_lock_path(settings.staging_dir, other), lock):
                continue  # a lane applies it now
            theirs = ready_run(applier, other)
            taken: list[JobRecord] = []
            for record in theirs.jobs:
                if (record.kind != kind or record.dry_run or rows + record.row_count > settings.group_max_rows
                        or len(run.jobs) + len(taken) >= settings.group_max_jobs):  # fmt: skip
                    break
                taken.append(record)
                rows += record.row_count
            if not taken:
                continue
            run.jobs.extend(taken)
            run.failed.extend(theirs.failed)
            joined.append(other)
            held.enter_context(lock.pop_all())
    return joined


def waiting_organizations(applier: Applier, limit: int) -> list[str]:
    """The organizations of the first `limit` apply jobs in the queue (`apply-{org}-{token}`)."""
    names = queued_ids(applier.queues.apply, limit)
    return list(dict.fromkeys(name[len(APPLY_PREFIX) :].rsplit("-", 1)[0] for name in names))


def _ask_again(applier: Applier, organizations: list[str]) -> None:
    """Organizations whose jobs a lane applied with its own: a job that became ready meanwhile found their
    lock taken, so queue an apply job for each that has a ready head again."""
    for organization_id in organizations:
        try:
            if ready_run(applier, organization_id):
                applier.queues.kick_apply(organization_id)
        except Exception:  # recovery asks again for organizations with unsettled jobs
            logger.warning("could not ask again for the jobs of %s", organization_id, exc_info=True)


def _show_waiting(applier: Applier, run: Run, reason: str) -> None:
    """Say in the jobs' status why they wait (in Redis only: the disk may be what is full)."""
    try:
        applier.store.update_all(run.jobs, durable=False, waiting_reason=reason)
    except Exception:
        logger.warning("could not record why jobs wait: %s", reason)


def ready_run(applier: Applier, organization_id: str) -> Run:
    """The run of ready jobs at the head of the organization (empty when the head is not ready)."""
    settings, store = applier.settings, applier.store
    run = Run()
    if not applier.redis_is_reconciled():
        return run  # Redis lost jobs that recovery has not put back: the head is not known for sure
    rows = 0
    for job_id in store.organization_jobs(organization_id, 2 * settings.group_max_jobs):
        record = store.read_durable(organization_id, job_id)
        if record is None or record.is_settled:
            store.forget(organization_id, job_id)
            continue
        if not record.is_open:
            run.failed.append(record)
            continue
        if not record.prepared:
            break  # the head of the organization waits for its preparation
        alone = record.row_count > settings.group_max_rows or record.dry_run  # a dry run is counted on its own
        if run.jobs and (alone or run.jobs[0].dry_run or record.kind != run.jobs[0].kind
                         or rows + record.row_count > settings.group_max_rows):  # fmt: skip
            break
        if len(run.jobs) >= settings.group_max_jobs:
            break
        run.jobs.append(record)
        rows += record.row_count
        if alone:
            break
    return run


def apply_run(applier: Applier, run: Run) -> int:
    """Apply one run in one transaction and record its jobs; how many jobs it settled."""
    try:
        return _commit_run(applier, run)
    except Exception as error:
        if is_transient(error):
            raise
        unreachable = applier.warehouse.unreachable()
        if unreachable is not None:  # whatever DuckDB said, it lost the warehouse meanwhile: nothing was written
            raise TransientError(f"waiting for the warehouse: {unreachable}") from error
        if len(run.jobs) > 1:
            logger.warning("%d jobs applied together failed (%s); applying each alone", len(run.jobs), error)
            settled = 0
            for index, record in enumerate(run.jobs):
                settled += apply_run(applier, Run(jobs=[record], failed=run.failed if index == 0 else []))
            return settled
        if not run.jobs:
            raise
        record = run.jobs[0]
        fail_job(applier.store, applier.queues, record, f"import failed: {error}", error)
        return 0  # the failed job is recorded in the next run


def _commit_run(applier: Applier, run: Run) -> int:
    store = applier.store
    started = time.perf_counter()
    loaded: list[tuple[Merged, JobRecord]] = []
    for record in run.jobs:
        files, has_lines = store.files(record), KINDS[record.kind].contract.has_lines
        try:
            # a large job alone (not a dry run, which is counted in memory): DuckDB reads its files itself
            stored = stored_prepared(files, has_lines) if len(run.jobs) == 1 and not record.dry_run else None
            loaded.append((stored or read_prepared(files, has_lines), record))
        except FileNotFoundError:
            # the prepared result is gone (a disk lost it): prepare it again, nothing is lost
            logger.warning("prepared files of job %s are missing; preparing it again", record.job_id)
            store.update(record, prepared=False, status=JobStatus.PENDING.value, started_at=None)
            applier.queues.enqueue_prepare(record, again=True)
            return 0
    if run.jobs and run.jobs[0].dry_run:
        counted = loaded[0][0]
        assert isinstance(counted, Prepared)
        return _count_dry_run(applier, run, counted)
    with applier.warehouse.cursor() as con:
        committed = applied_at(con, [record.job_id for record in run.jobs])
        pending = [(prepared, record) for prepared, record in loaded if record.job_id not in committed]
        written = datetime.now(UTC).replace(tzinfo=None)
        if pending or run.failed:
            first = (pending[0][1] if pending else run.failed[0]).job_id
            tables = KINDS[pending[0][1].kind].tables if pending else None
            with applier.warehouse.exclusive(tables_written(tables, [prepared for prepared, _ in pending])):
                written = apply_jobs(con, tables, pending, run.failed, before_commit=hooks.merge_pause(first))
            applier.last_apply = time.monotonic()
    for record in run.jobs:
        record.status = JobStatus.COMPLETED.value
        record.processed_count = record.row_count
        record.completed_at = iso(committed.get(record.job_id, written).replace(tzinfo=UTC))
        record.recorded = True
        record.waiting_reason = None
    for record in run.failed:
        record.recorded = True
    notify_job_ended(applier.settings, run.jobs)
    store.save([*run.jobs, *run.failed])
    for record in [*run.jobs, *run.failed]:
        release_ended(store.files(record))
    applier.publisher.committed()
    seconds = time.perf_counter() - started
    with metrics.batched(store.redis) as pipe:
        for record in run.jobs:
            _count_completed(pipe, record, seconds / len(run.jobs))
    for record in run.jobs:
        logs.job_stage(
            logger, "applied", record, record.status.lower(), seconds, applied_with=len(run.jobs) - 1 or None
        )
    return len(run.jobs) + len(run.failed)


def tables_written(tables: KindTables | None, prepared: Sequence[Merged]) -> list[str]:
    """The tables a merge deletes from or adds stubs to (import_jobs only ever gains rows)."""
    if tables is None:
        return []
    named = [tables.rows.name] + ([tables.lines.name] if tables.lines is not None else [])
    return [*named, *{table for each in prepared for table in each.references}]


def _count_dry_run(applier: Applier, run: Run, prepared: Prepared) -> int:
    """A dry run at its turn: count what it would change, write nothing (no rows, no import_jobs row)."""
    (record,) = run.jobs
    with applier.warehouse.cursor() as con:
        inserted, updated, unchanged = count_changes(con, KINDS[record.kind].tables, prepared, record.organization_id)
        if run.failed:
            apply_jobs(con, None, [], run.failed)
    record.status = JobStatus.COMPLETED.value
    record.processed_count = record.row_count
    record.completed_at = iso(datetime.now(UTC))
    record.recorded = True
    record.waiting_reason = None
    record.would_insert, record.would_update, record.would_leave_unchanged = inserted, updated, unchanged
    for failed in run.failed:
        failed.recorded = True
    notify_job_ended(applier.settings, [record])
    applier.store.save([record, *run.failed])
    release_ended(applier.store.files(record))
    logs.job_stage(
        logger, "counted", record, "completed (dry run)", would_insert=inserted, would_update=updated,
        would_leave_unchanged=unchanged,
    )  # fmt: skip
    return 1 + len(run.failed)


def _count_completed(connection: redis.Redis, record: JobRecord, apply_seconds: float) -> None:
    metrics.count(connection, "stockyard_jobs_completed", record.kind)
    metrics.count(connection, "stockyard_rows_processed", record.kind, by=record.row_count)
    metrics.count(connection, "stockyard_rows_failed", record.kind, by=record.failed_count)
    metrics.observe(connection, "stockyard_stage_duration_seconds", apply_seconds, record.kind, "apply")
    created, completed = parse_iso(record.created_at), parse_iso(record.completed_at)
    if created is not None and completed is not None:
        duration = (completed - created).total_seconds()
        metrics.observe(connection, "stockyard_job_duration_seconds", duration, record.kind)
