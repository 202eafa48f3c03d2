"""Import jobs: their records, the queue, and `run_import`, the worker's whole job.

From the moment it is accepted, a job's record is a JSON file beside its staged Parquet: that durable
record is the authority on the job's state, and it survives losing Redis. Redis holds a copy of it
(fast status reads, live progress), the queue, and an index of the jobs still open; service/recovery.py
rebuilds all three from the durable records. Errors and warnings go to Parquet files beside them, so
that a job with a million bad rows pages cheaply.

Test hook: STOCKYARD_TEST_MERGE_DELAY=<seconds> holds the first merge a process runs open that long
just before its COMMIT (and logs "merge of job ... paused"), so that a test can kill the worker, or stop
the service, in the middle of a merge. Unset, it costs nothing.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import redis
import rq
import rq.job
from redis.client import Pipeline

from contracts import CONTRACTS
from contracts.common import ERROR_SCHEMA, ROW, Contract, Validated, validate
from service import warehouse
from service.errors import NotFoundError, TerminalError, TransientError
from service.settings import Settings, get_settings
from service.staging import fsync_and_rename, staged_paths, write_record
from transforms import PREPARERS, Prepared

STATUS_ERROR_LIMIT = 1000
VALIDATION_CHUNK_ROWS = 250_000
GROUP_MAX_ROWS = 50_000
"""A job of at most this many rows is applied together with the small jobs queued right behind it
(of its organization and kind), up to this many rows and GROUP_MAX_JOBS jobs in all."""
GROUP_MAX_JOBS = 100
GROUP_ROW_STRIDE = 1 << 40
OPEN_JOBS = "stockyard:open-jobs"
"""Sorted set of "{org}/{jobId}" for every job PENDING or PROCESSING, scored by acceptance time."""
RQ_JOB_PREFIX = "import-"
_KEY = "stockyard:job:{}"
_PUBLISHED_AT = "stockyard:published_at"
PUBLISH_PENDING = "stockyard:publish_pending"
PUBLISH_SECONDS = "stockyard:publish_seconds"
PUBLISH_COST_FACTOR = 4
_MERGE_DELAY_VARIABLE = "STOCKYARD_TEST_MERGE_DELAY"
_TRANSIENT_BACKOFF_SECONDS = 1.0
_merges_delayed: list[str] = []

logger = logging.getLogger("stockyard.jobs")


class JobStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass
class JobRecord:
    job_id: str
    organization_id: str
    kind: str
    status: str
    row_count: int
    created_at: str
    processed_count: int = 0
    failed_count: int = 0
    started_at: str | None = None
    completed_at: str | None = None
    job_error: str | None = None  # why a FAILED job failed
    error_count: int = 0
    warning_count: int = 0
    upload_format: str = "json"  # how the rows were sent (UploadFormat); failed rows are returned so

    @property
    def is_open(self) -> bool:
        """Accepted and not finished: PENDING or PROCESSING."""
        return self.status in (JobStatus.PENDING, JobStatus.PROCESSING)

    @property
    def index_member(self) -> str:
        return f"{self.organization_id}/{self.job_id}"

    def to_redis(self) -> dict[str, str]:
        return {k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_redis(cls, data: dict[bytes, bytes]) -> JobRecord | None:
        """The record a Redis hash holds, or None when the hash is not a whole record."""
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k.decode(): json.loads(v) for k, v in data.items() if k.decode() in names})
        except (TypeError, ValueError):
            return None

    @classmethod
    def from_durable(cls, path: Path) -> JobRecord | None:
        """The record a durable file holds, or None when there is no such file (or it is unreadable)."""
        names = {f.name for f in fields(cls)}
        try:
            data = json.loads(path.read_bytes())
            return cls(**{k: v for k, v in data.items() if k in names})
        except FileNotFoundError:
            return None
        except (OSError, TypeError, ValueError, AttributeError):
            logger.warning("unreadable job record %s", path, exc_info=True)
            return None


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)


def acceptance_score(record: JobRecord) -> float:
    """Orders jobs as they were accepted: createdAt, in seconds."""
    created = parse_iso(record.created_at)
    return created.replace(tzinfo=UTC).timestamp() if created is not None else 0.0


def job_id_of(rq_job_id: str) -> str | None:
    """The import job an RQ job runs: `import-{jobId}`, or `import-{jobId}-{retry}` for a re-queued one."""
    if not rq_job_id.startswith(RQ_JOB_PREFIX):
        return None
    return rq_job_id[len(RQ_JOB_PREFIX) :].split("-", 1)[0]


class JobStore:
    """Job records: the durable file first on every state change, then its copy in Redis."""

    def __init__(self, connection: redis.Redis, settings: Settings) -> None:
        self.redis = connection
        self.settings = settings

    def create(self, record: JobRecord) -> None:
        self._write_durable(record)
        self.cache(record)

    @staticmethod
    def cache_key(job_id: str) -> str:
        return _KEY.format(job_id)

    def cache(self, record: JobRecord, pipeline: Pipeline | None = None) -> None:
        """Copy the record to Redis and keep the index of open jobs in step with it."""
        pipe = pipeline if pipeline is not None else self.redis.pipeline()
        pipe.hset(_KEY.format(record.job_id), mapping=record.to_redis())  # type: ignore[arg-type]
        if record.is_open:
            pipe.zadd(OPEN_JOBS, {record.index_member: acceptance_score(record)})
        else:
            pipe.zrem(OPEN_JOBS, record.index_member)
        if pipeline is None:
            pipe.execute()

    def get(self, job_id: str, organization_id: str | None = None) -> JobRecord:
        """The job; NotFoundError when missing or of another organization (the two look the same).

        The durable record is read whenever Redis cannot say for sure: it lost the job, cannot be
        reached, or holds an open state that the durable record may already have moved past.
        """
        try:
            data = self.redis.hgetall(_KEY.format(job_id))
        except redis.RedisError:
            if organization_id is None:
                raise
            data = {}
        cached = JobRecord.from_redis(data) if data else None  # type: ignore[arg-type]
        if cached is not None and organization_id is not None and cached.organization_id != organization_id:
            raise NotFoundError(f"no job {job_id}", job_id=job_id)
        owner = organization_id or (cached.organization_id if cached is not None else None)
        if owner is not None and (cached is None or cached.is_open):
            durable = self.read_durable(owner, job_id)
            if durable is not None and (cached is None or not durable.is_open):
                return durable
        if cached is None:
            raise NotFoundError(f"no job {job_id}", job_id=job_id)
        return cached

    def read_durable(self, organization_id: str, job_id: str) -> JobRecord | None:
        try:
            path = staged_paths(self.settings.staging_dir, organization_id, job_id)["record"]
        except ValueError:
            return None
        return JobRecord.from_durable(path)

    def update(self, record: JobRecord, durable: bool = True, **changes: Any) -> JobRecord:
        for name, value in changes.items():
            setattr(record, name, value)
        if durable:
            self._write_durable(record)
        self.cache(record)
        return record

    def _write_durable(self, record: JobRecord) -> None:
        path = staged_paths(self.settings.staging_dir, record.organization_id, record.job_id)["record"]
        write_record(path, asdict(record))

    def queue(self) -> rq.Queue:
        return rq.Queue(self.settings.queue_name, connection=self.redis)

    def enqueue(self, record: JobRecord, *, retry: bool = False, pipeline: Pipeline | None = None) -> None:
        """Queue the job: at the back when accepted, at the front when re-queued (it was accepted earlier)."""
        suffix = f"-{secrets.token_hex(4)}" if retry else ""
        self.queue().enqueue_call(
            "service.jobs.run_import",
            args=(record.job_id, record.organization_id),
            job_id=f"{RQ_JOB_PREFIX}{record.job_id}{suffix}",
            timeout=self.settings.job_timeout_seconds,
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
            at_front=retry,
            pipeline=pipeline,
        )


@contextmanager
def job_lock(path: Path) -> Iterator[None]:
    """Held by whoever runs the job, as long as it runs. The kernel drops it when that process dies,
    which is how recovery tells a running job from one whose worker was killed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def job_is_running(path: Path) -> bool:
    """Does a live process hold the job's lock?"""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken just now
    return False


def read_issues(path_key: str, record: JobRecord, settings: Settings, offset: int, limit: int) -> list[dict[str, Any]]:
    """A page of a job's errors or warnings, in row order."""
    path = staged_paths(settings.staging_dir, record.organization_id, record.job_id)[path_key]
    if not path.exists():
        return []
    page = pl.scan_parquet(path).slice(offset, limit).collect()
    return page.to_dicts()


def job_level_error(message: str) -> dict[str, Any]:
    return {"row": None, "field": None, "code": "job_failed", "message": message, "value": None}


# --- the worker side ---------------------------------------------------------------------------


def _is_transient(error: Exception) -> bool:
    """Worth another try later, with nothing applied: Redis went away, or the warehouse file was busy."""
    if isinstance(error, redis.RedisError | TransientError):
        return True
    return isinstance(error, duckdb.IOException) and "Could not set lock" in str(error)


def run_import(job_id: str, organization_id: str | None = None) -> str:
    """Validate, transform and merge one staged job; record its outcome. Safe to run again, and twice at once.

    A small job takes the small jobs of its organization and kind queued right behind it along (see
    _claim_followers), and they are applied together: one scan of the warehouse for all of them.
    """
    settings = get_settings()
    current = rq.get_current_job()
    connection = current.connection if current is not None else redis.Redis.from_url(settings.effective_redis_url)
    store = JobStore(connection, settings)
    record = store.get(job_id, organization_id)
    paths = staged_paths(settings.staging_dir, record.organization_id, job_id)
    with job_lock(paths["lock"]), ExitStack() as held:
        record = store.get(job_id, record.organization_id)  # another run may have finished it meanwhile
        if not record.is_open:
            return record.status
        group = [record, *_claim_followers(store, record, held)]
        try:
            return _run_group(store, settings, group)
        finally:
            for member in group:
                if not member.is_open:  # finished for good: whoever waits for the lock will find it so
                    staged_paths(settings.staging_dir, member.organization_id, member.job_id)["lock"].unlink(
                        missing_ok=True
                    )


def _claim_followers(store: JobStore, lead: JobRecord, held: ExitStack) -> list[JobRecord]:
    """The small jobs queued right behind `lead`, of its organization and kind, taken off the queue.

    Only an unbroken run from the head of the queue is taken, so that no job overtakes an earlier one
    of its organization. Each is locked (as run_import locks a job) before it leaves the queue, and
    `held` keeps the locks: should this process die, recovery finds those jobs open, unlocked and not
    queued, and queues them again in acceptance order.
    """
    if lead.row_count > GROUP_MAX_ROWS:
        return []
    queue_key = store.queue().key
    followers: list[JobRecord] = []
    rows = lead.row_count
    for entry in store.redis.lrange(queue_key, 0, GROUP_MAX_JOBS - 2):
        rq_job_id = entry.decode() if isinstance(entry, bytes) else str(entry)
        job_id = job_id_of(rq_job_id)
        try:
            record = store.get(job_id, lead.organization_id) if job_id is not None else None
        except (NotFoundError, ValueError):
            record = None  # of another organization, or gone
        if record is None or record.kind != lead.kind or rows + record.row_count > GROUP_MAX_ROWS:
            break
        paths = staged_paths(store.settings.staging_dir, record.organization_id, record.job_id)
        if not _try_lock(paths["lock"], held):
            break
        record = store.get(record.job_id, record.organization_id)  # as it is now that we hold its lock
        if not record.is_open or not store.redis.lrem(queue_key, 1, rq_job_id):
            break  # finished, or taken by another worker meanwhile
        store.redis.delete(rq.job.Job.key_for(rq_job_id))
        followers.append(record)
        rows += record.row_count
    return followers


def _try_lock(path: Path, held: ExitStack) -> bool:
    """Take a job's lock if nobody holds it; `held` releases it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a")  # noqa: SIM115 - closed by `held`, which releases the lock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    held.callback(handle.close)
    return True


def _run_group(store: JobStore, settings: Settings, group: list[JobRecord]) -> str:
    """Validate, transform and merge the jobs (one, or a run of small ones) in one transaction; record each.

    Returns the first job's status. Should the jobs fail together, each runs again alone, so that one
    bad job fails alone.
    """
    started = utc_now()
    for record in group:
        store.update(
            record, status=JobStatus.PROCESSING.value, started_at=iso(started), processed_count=0, completed_at=None
        )
    try:
        validated = _validate_group(store, settings, group)
        prepared = [PREPARERS[r.kind](v, r.organization_id) for r, v in zip(group, validated, strict=True)]
        failed = [v.errors.get_column("row").n_unique() for v in validated]
        error_counts = [v.errors.height for v in validated]
        for record, each, ready in zip(group, validated, prepared, strict=True):
            _write_issues(settings, record, each.errors, ready.warnings)
        del validated  # the typed rows of a large job: not held through the merge
        committed = _merge(store, settings, group, prepared, failed, started)
    except Exception as error:
        if _is_transient(error):
            # left PROCESSING with nothing applied: recovery puts them back at the front of the queue
            time.sleep(_TRANSIENT_BACKOFF_SECONDS)  # and they run again next: not in a hot loop
            raise TransientError(f"import interrupted, to be retried: {error}", job_id=group[0].job_id) from error
        if len(group) > 1:
            logger.warning("%d jobs applied together failed (%s); applying each alone", len(group), error)
            return _run_each_alone(store, settings, group)
        # the job as a whole failed: nothing of it is applied
        message = error.message if isinstance(error, TerminalError) else f"import failed: {error}"
        fail_job(store, settings, group[0], message)
        raise
    for record, errors, ready, failures in zip(group, error_counts, prepared, failed, strict=True):
        store.update(
            record,
            status=JobStatus.COMPLETED.value,
            processed_count=record.row_count,
            failed_count=failures,
            completed_at=iso(committed[record.job_id].replace(tzinfo=UTC)),
            error_count=errors,
            warning_count=ready.warnings.height,
        )
    _after_commit(store, settings, large=sum(record.row_count for record in group) > GROUP_MAX_ROWS)
    return group[0].status


def _after_commit(store: JobStore, settings: Settings, *, large: bool) -> None:
    """What follows a commit once its jobs read COMPLETED: publish the analysts' copy if due, so that
    a client is not kept waiting for the copy (it was marked pending at the commit: a worker that
    dies here leaves it to the next one).

    After a large job the warehouse connection is closed first, so that DuckDB hands back what its
    merge used (about 135 MB after 5M rows) before the next large job needs memory of its own, and
    the checkpoint of closing is the only one the copy needs. Small jobs keep the connection open:
    opening it costs them more than their merge. A failure here fails nothing: the jobs are
    committed, and the next commit opens the warehouse again and publishes.
    """
    with warehouse.writer_lock(settings.data_dir):
        if large:
            try:
                warehouse.writer(settings.warehouse_path).close()
            except Exception:
                logger.warning("could not close the warehouse after a large job", exc_info=True)
        _publish_quietly(store, settings)


def _run_each_alone(store: JobStore, settings: Settings, group: list[JobRecord]) -> str:
    """Run the jobs of a failed group one by one, in order; re-raise the first job's own failure."""
    first_failure: Exception | None = None
    for record in group:
        try:
            _run_group(store, settings, [record])
        except TransientError:
            raise
        except Exception as error:  # that job is FAILED now, with its reason; the next ones still run
            if record is group[0]:
                first_failure = error
    if first_failure is not None:
        raise first_failure
    return group[0].status


def _merge(
    store: JobStore,
    settings: Settings,
    group: list[JobRecord],
    prepared: list[Prepared],
    failed: list[int],
    started: datetime,
) -> dict[str, datetime]:
    """Apply the jobs not committed yet in one transaction; when each was committed."""
    committed: dict[str, datetime] = {}
    with warehouse.writer_lock(settings.data_dir):
        try:
            with warehouse.writer(settings.warehouse_path).connection() as con:
                # a retry of a committed job must not apply it again
                committed = warehouse.applied_at(con, [record.job_id for record in group])
                pending = [
                    (record, ready, failures)
                    for record, ready, failures in zip(group, prepared, failed, strict=True)
                    if record.job_id not in committed
                ]
                if pending:
                    begun = started.replace(tzinfo=None)
                    jobs = [  # completed when their rows are written (apply_jobs stamps it)
                        (ready, _outcome(record, JobStatus.COMPLETED, failures, begun, None))
                        for record, ready, failures in pending
                    ]
                    now = utc_now().replace(tzinfo=None)
                    written = warehouse.apply_jobs(con, jobs, now, before_commit=_merge_delay(group[0]))
                    committed.update((record.job_id, written) for record, _, _ in pending)
        except Exception:
            if len(committed) < len(group):
                raise
            # closing (the checkpoint) failed after COMMIT: the commit is in the WAL and stands
            logger.warning("closing the warehouse after job %s failed", group[-1].job_id, exc_info=True)
        store.redis.set(PUBLISH_PENDING, 1)  # published once the jobs read COMPLETED (_after_commit)
    return committed


def _merge_delay(record: JobRecord) -> Callable[[], None] | None:
    """The test hook of STOCKYARD_TEST_MERGE_DELAY (see the module docstring)."""
    delay = float(os.environ.get(_MERGE_DELAY_VARIABLE) or 0)
    if delay <= 0 or _merges_delayed:
        return None

    def pause() -> None:
        _merges_delayed.append(record.job_id)
        logger.warning("test hook: merge of job %s paused %.1f s before commit", record.job_id, delay)
        time.sleep(delay)

    return pause


def _scan_staged(settings: Settings, record: JobRecord) -> tuple[pl.LazyFrame, pl.LazyFrame | None]:
    """The staged rows (and lines) of a job, to be read as needed."""
    paths = staged_paths(settings.staging_dir, record.organization_id, record.job_id)
    needed = [paths["rows"], *([paths["lines"]] if CONTRACTS[record.kind].has_lines else [])]
    if not all(path.exists() for path in needed):
        raise TerminalError("the staged upload is missing", job_id=record.job_id)
    rows = pl.scan_parquet(paths["rows"])
    lines = pl.scan_parquet(paths["lines"]) if CONTRACTS[record.kind].has_lines else None
    return rows, lines


def _validate_group(store: JobStore, settings: Settings, group: list[JobRecord]) -> list[Validated]:
    """Validate each job of the group; small jobs together, in one call (its fixed cost is most of theirs).

    Job k's row numbers are shifted by k * GROUP_ROW_STRIDE while they share frames, so that every
    error and row comes back to its own job with its own row number.
    """
    if len(group) == 1:
        return [_validate_in_chunks(store, group[0], settings)]
    contract = CONTRACTS[group[0].kind]
    rows: list[pl.DataFrame] = []
    lines: list[pl.DataFrame] = []
    for index, record in enumerate(group):
        shift = (pl.col(ROW).cast(pl.Int64()) + index * GROUP_ROW_STRIDE).alias(ROW)
        job_rows, job_lines = _scan_staged(settings, record)
        rows.append(job_rows.with_columns(shift).collect())
        if job_lines is not None:
            lines.append(job_lines.with_columns(shift).collect())
    validated = validate(
        contract,
        pl.concat(rows, how="diagonal_relaxed"),
        pl.concat(lines, how="diagonal_relaxed") if contract.has_lines else None,
    )
    return [_job_part(validated, index) for index in range(len(group))]


def _job_part(validated: Validated, index: int) -> Validated:
    """The rows, lines and errors of job `index` of a group, with its own row numbers again."""
    low = index * GROUP_ROW_STRIDE

    def part(frame: pl.DataFrame, column: str) -> pl.DataFrame:
        mine = frame.filter(pl.col(column).is_between(low, low + GROUP_ROW_STRIDE - 1))
        return mine.with_columns(pl.col(column) - low)

    return Validated(
        rows=part(validated.rows, ROW),
        lines=part(validated.lines, ROW) if validated.lines is not None else None,
        errors=part(validated.errors, "row"),
    )


def _validate_in_chunks(store: JobStore, record: JobRecord, settings: Settings) -> Validated:
    """Validate a job's staged rows in chunks, so that processedCount grows while a large job runs."""
    rows, lines = _scan_staged(settings, record)

    def progress(done: int) -> None:
        store.update(record, durable=False, processed_count=done)

    return validate_in_chunks(CONTRACTS[record.kind], rows, lines, progress)


def validate_in_chunks(
    contract: Contract,
    rows: pl.LazyFrame,
    lines: pl.LazyFrame | None,
    progress: Callable[[int], None] | None = None,
) -> Validated:
    """Validate staged rows VALIDATION_CHUNK_ROWS at a time: only one chunk of their raw text is read
    into memory at once, and `progress` hears how many rows are done after each chunk but the last."""
    height = rows.select(pl.len()).collect().item()
    parts: list[Validated] = []
    for start in range(0, max(height, 1), VALIDATION_CHUNK_ROWS):
        chunk = rows.slice(start, VALIDATION_CHUNK_ROWS).collect()
        chunk_lines = None
        if lines is not None and chunk.height:  # by the chunk's own rows: NDJSON rows skip blank lines
            first, last = chunk.get_column(ROW).min(), chunk.get_column(ROW).max()
            chunk_lines = lines.filter(pl.col(ROW).is_between(first, last)).collect()
        parts.append(validate(contract, chunk, chunk_lines))
        done = min(start + VALIDATION_CHUNK_ROWS, height)
        if progress is not None and done < height:
            progress(done)
    return Validated(
        rows=pl.concat([p.rows for p in parts]),
        lines=pl.concat([p.lines for p in parts if p.lines is not None]) if lines is not None else None,
        errors=pl.concat([p.errors for p in parts]),
    )


def _write_issues(settings: Settings, record: JobRecord, errors: pl.DataFrame, warnings: pl.DataFrame) -> None:
    paths = staged_paths(settings.staging_dir, record.organization_id, record.job_id)
    columns = [c for c in ERROR_SCHEMA if c != "position"]
    for key, frame in (("errors", errors), ("warnings", warnings.sort("row", maintain_order=True))):
        tmp = paths[key].with_name(paths[key].name + ".tmp")
        frame.select(columns).write_parquet(tmp)
        fsync_and_rename(tmp, paths[key])


def _outcome(
    record: JobRecord, status: JobStatus, failed: int, started: datetime | None, completed: datetime | None
) -> warehouse.JobOutcome:
    """The import_jobs row of a finished job (naive UTC times, as the warehouse stores them)."""
    return warehouse.JobOutcome(
        job_id=record.job_id,
        organization_id=record.organization_id,
        kind=record.kind,
        status=status.value,
        row_count=record.row_count,
        processed_count=record.row_count if status is JobStatus.COMPLETED else 0,
        failed_count=failed,
        created_at=parse_iso(record.created_at) or utc_now().replace(tzinfo=None),
        started_at=started,
        completed_at=completed,
    )


def fail_job(store: JobStore, settings: Settings, record: JobRecord, message: str) -> None:
    """Mark an accepted job FAILED for good (nothing of it applied), with the reason for its status."""
    completed = utc_now()
    store.update(
        record,
        status=JobStatus.FAILED.value,
        completed_at=iso(completed),
        job_error=message,
        processed_count=0,
        failed_count=record.row_count,
    )
    outcome = _outcome(
        record, JobStatus.FAILED, record.row_count, parse_iso(record.started_at), completed.replace(tzinfo=None)
    )
    try:
        with warehouse.writer_lock(settings.data_dir):
            with warehouse.writer(settings.warehouse_path).connection() as con:
                warehouse.record_failure(con, outcome)
            _publish_if_due(store, settings)
    except Exception:  # the job record already says FAILED; the warehouse copy of it is best effort
        logger.warning("could not record the failure of job %s in the warehouse", record.job_id, exc_info=True)


def _publish_quietly(store: JobStore, settings: Settings) -> None:
    """Publish if due. A failure here fails nothing: the commit stands, and the next publish catches up."""
    try:
        _publish_if_due(store, settings)
    except Exception:
        logger.warning("could not publish the analysts' copy; the next commit will", exc_info=True)


def _publish_if_due(store: JobStore, settings: Settings) -> None:
    """Publish now if the last copy is older than the interval; else leave it pending for the worker.

    The copy costs O(warehouse size), so a stream of small jobs must not pay it after each one; the
    worker publishes what is pending once the interval has passed (publish_pending_if_due).
    """
    if publish_is_due(store, settings):
        publish_now(store, settings)
    else:
        store.redis.set(PUBLISH_PENDING, 1)


def publish_now(store: JobStore, settings: Settings) -> None:
    """Copy the warehouse for analysts. Call with the writer lock held. A copy that fails stays pending."""
    started = time.perf_counter()
    warehouse.writer(settings.warehouse_path).publish(settings.analytics_path)
    store.redis.mset({_PUBLISHED_AT: time.time(), PUBLISH_SECONDS: time.perf_counter() - started})
    store.redis.delete(PUBLISH_PENDING)


def publish_is_due(store: JobStore, settings: Settings) -> bool:
    """The interval has passed since the last copy, and so has PUBLISH_COST_FACTOR times what it cost.

    A copy's cost grows with the warehouse (the checkpoint rewrites the row groups that updates
    touched, then the whole file is copied: about 0.85 s at 10M inventory rows), so a fixed interval
    would let publishing eat the writer's time; this bounds it to 1 / (1 + factor) of it. An interval
    of 0 is the operator asking for a copy after every commit, whatever it costs.
    """
    if settings.publish_interval_seconds <= 0:
        return True
    last, cost = store.redis.mget(_PUBLISHED_AT, PUBLISH_SECONDS)
    wait = max(settings.publish_interval_seconds, PUBLISH_COST_FACTOR * float(cost or 0))
    return time.time() - float(last or 0) >= wait


def publish_pending_if_due(store: JobStore, settings: Settings) -> bool:
    """Publish a copy left pending by _publish_if_due once its interval has passed; True if it did."""
    if not store.redis.exists(PUBLISH_PENDING) or not publish_is_due(store, settings):
        return False
    with warehouse.writer_lock(settings.data_dir):
        publish_now(store, settings)
    return True
