"""Preparing a job: its staged rows cast, validated and transformed into what the warehouse merges.

It is pure work on the job's own files, so any number of workers prepare jobs at once, on any machine
that shares Redis and the staging area. Its outcome is written beside the staged files: every error
and warning, and the prepared rows, lines and stub references (service/job_files.py); the durable
record then says `prepared`, and the applier is asked to apply the organization's jobs (service/apply.py),
which it does in acceptance order, whatever order they were prepared in.

- Small jobs (at most STOCKYARD_GROUP_MAX_ROWS rows) queued together are validated in one call and
  transformed in one call, whatever their organizations: a call's fixed cost is most of theirs.
- A large job is validated a chunk at a time: its progress grows, and between two chunks the worker
  prepares the small jobs waiting, so that no small job waits long behind a large one, even with one
  worker. Its errors go to disk chunk by chunk: a job's memory does not grow with its error count.
- Large jobs being prepared at once hold at most STOCKYARD_PREPARE_ROWS_IN_FLIGHT rows in all; a large
  job that does not fit waits (preparing small jobs meanwhile) until it does.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import polars as pl
import pyarrow.parquet as pq
import redis
import rq
from pyarrow import feather

from contracts.common import ERROR_SCHEMA, ROW, Contract, ErrorCode, Validated, empty_errors, validate
from service import hooks, logs, metrics
from service.errors import BadRequestError, ServiceUnavailableError, TerminalError, TransientError
from service.files import commit_file, remove_quietly, temporary_path
from service.job import JobRecord, JobStatus, iso, parse_iso, utc_now
from service.job_files import REFERENCE_TABLES, JobFiles, held_lock, release_ended, try_lock
from service.job_store import JobStore
from service.kinds import KINDS
from service.queue import Queues, job_id_of, queued_ids, take_from_queue
from service.settings import Settings, get_settings
from service.staging import stage_kept_body
from service.staging.large_json import Chunk, NotStreamable, kept_body_chunks, read_kept_body
from service.warehouse import StoredJob
from service.webhooks import notify_job_ended
from transforms import JOB, Prepared

GROUP_ROW_STRIDE = 1 << 40
"""Job k of a group has its row numbers shifted by k times this while the group shares frames."""
ISSUE_COLUMNS = [column for column in ERROR_SCHEMA if column != "position"]
"""The columns of the errors and warnings files (CONTRACT.md's error entry)."""
SMALL_JOBS_BUDGET_SECONDS = 1.0
"""Between two chunks of a large job, at most this long goes to preparing small jobs."""
_IN_FLIGHT = "stockyard:prepare-in-flight"
_RESERVE = """
local total = 0
for _, rows in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(rows) end
if total == 0 or total + tonumber(ARGV[2]) <= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""
_TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
_TRANSIENT_BACKOFF_SECONDS = 1.0
MAX_RETRY_SECONDS = 300.0
_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_CATALOG_LOST = (
    "server closed the connection unexpectedly",
    "terminating connection due to administrator command",
    "could not connect to server",
    "Connection refused",
    "no connection to the server",
)
"""What DuckDB's postgres extension says when the lake's catalog server is gone (restarting, or killed)."""

logger = logging.getLogger("stockyard.prepare")


@dataclass
class Context:
    """What preparing needs: settings, the job store and the queues, on one Redis connection."""

    settings: Settings
    store: JobStore
    queues: Queues

    @classmethod
    def current(cls) -> Context:
        settings = get_settings()
        current = rq.get_current_job()
        connection = current.connection if current is not None else redis.Redis.from_url(settings.effective_redis_url)
        return cls(settings, JobStore(connection, settings), Queues(connection, settings))


def is_transient(error: BaseException) -> bool:
    """Worth another try later, with nothing lost: Redis away, or storage full or not writable for now.

    Polars and DuckDB report a failed write in words (`File too large (os error 27)`, `Could not write
    file ...: No space left on device`): those count as the OSError they stand for. A DuckDB database
    invalidated by a failed write is reopened (service/warehouse.py), so that too is worth a retry."""
    if isinstance(error, redis.RedisError | TransientError):
        return True
    if isinstance(error, OSError):
        return error.errno in _TRANSIENT_ERRNOS
    if isinstance(error, duckdb.IOException | duckdb.FatalException):
        return True
    if isinstance(error, duckdb.TransactionException) and "conflict" in str(error).lower():
        return True  # DuckLake failed a commit that another writer's overlapped: nothing of it was written
    text = str(error)
    if isinstance(error, duckdb.Error) and any(lost in text for lost in _CATALOG_LOST):
        return True  # the lake's PostgreSQL went away mid-statement (DuckDB reports it in any class of error)
    found = _OS_ERROR.search(text)
    if found is not None:
        return int(found.group(1)) in _TRANSIENT_ERRNOS
    return any(os.strerror(code) in text for code in _TRANSIENT_ERRNOS)


def prepare_import(job_id: str, organization_id: str | None = None) -> str:
    """The prepare RQ job: prepare one job (and small ones queued beside it). Safe to run again, and twice."""
    context = Context.current()
    record = context.store.get(job_id, organization_id)
    files = context.store.files(record)
    with ExitStack() as held:
        held.enter_context(held_lock(files.lock))
        record = context.store.get(job_id, record.organization_id)  # another run may have finished it
        if not record.is_open:
            return record.status
        if record.prepared:
            context.queues.kick_apply(record.organization_id)
            return record.status
        if record.row_count > context.settings.group_max_rows:
            _reserve_rows(context, record, held)
            group = [record]
        else:
            group = [record, *claim_small_jobs(context, record.kind, context.settings.group_max_rows - record.row_count,
                                               context.settings.group_max_jobs - 1, held)]  # fmt: skip
        prepare_group(context, group)
        return record.status


def claim_small_jobs(context: Context, kind: str | None, rows: int, jobs: int, held: ExitStack) -> list[JobRecord]:
    """Small jobs waiting to be prepared, of `kind` (or of the first one's), taken off the queue.

    Each is locked before it leaves the queue, and `held` keeps the locks: should this process die,
    recovery finds those jobs open, unlocked and not queued, and queues them again.
    """
    claimed: list[JobRecord] = []
    queue = context.queues.prepare
    waiting = {rq_job_id: job_id_of(rq_job_id) for rq_job_id in queued_ids(queue, 2 * context.settings.group_max_jobs)}
    # a first look at their copies in Redis, in one round trip (kind and size never change); the durable
    # record is read only for those locked
    copies = context.store.cached([job_id for job_id in waiting.values() if job_id is not None])
    for rq_job_id, job_id in waiting.items():
        if len(claimed) >= jobs:
            break
        record = copies.get(job_id) if job_id is not None else None
        if record is None or (kind is not None and record.kind != kind) or record.row_count > rows:
            continue  # gone from Redis (recovery will see to it), or not for this group
        if not try_lock(context.store.files(record).lock, held):
            continue
        record = context.store.get(record.job_id, record.organization_id)  # as it is now that we hold its lock
        if not record.is_open or record.prepared or not take_from_queue(queue, rq_job_id):
            continue  # finished, or taken by another worker meanwhile
        claimed.append(record)
        kind = record.kind
        rows -= record.row_count
    return claimed


def prepare_waiting_small_jobs(context: Context, budget_seconds: float = SMALL_JOBS_BUDGET_SECONDS) -> int:
    """Prepare small jobs waiting in the queue, for at most about `budget_seconds`; how many were prepared."""
    deadline = time.monotonic() + budget_seconds
    done = 0
    while time.monotonic() < deadline:
        with ExitStack() as held:
            group = claim_small_jobs(
                context, None, context.settings.group_max_rows, context.settings.group_max_jobs, held
            )
            if not group:
                return done
            try:
                prepare_group(context, group)
            except Exception:  # theirs to fail or retry; the large job goes on
                logger.warning("small jobs prepared between chunks of a large one failed", exc_info=True)
            done += len(group)
    return done


def _reserve_rows(context: Context, record: JobRecord, held: ExitStack) -> None:
    """Wait until the large job fits among the rows being prepared (see the module docstring)."""
    limit = context.settings.prepare_rows_in_flight
    reserve = context.store.redis.register_script(_RESERVE)
    logged = False
    while not reserve(keys=[_IN_FLIGHT], args=[record.job_id, record.row_count, limit]):
        if not logged:
            logger.info(
                "job %s (%d rows) waits for large jobs being prepared to finish", record.job_id, record.row_count
            )
            logged = True
        if not prepare_waiting_small_jobs(context):
            time.sleep(0.2)
    held.callback(context.store.redis.hdel, _IN_FLIGHT, record.job_id)


def release_stale_reservations(connection: redis.Redis, running: Callable[[str], bool]) -> int:
    """Drop the reservations of jobs that nobody prepares any more (their worker died)."""
    held = [key.decode() if isinstance(key, bytes) else str(key) for key in connection.hkeys(_IN_FLIGHT)]
    stale = [job_id for job_id in held if not running(job_id)]
    if stale:
        connection.hdel(_IN_FLIGHT, *stale)
    return len(stale)


def prepare_group(context: Context, group: list[JobRecord]) -> None:
    """Prepare the jobs (one, or small ones of one kind) and mark each prepared, or failed. Their locks
    are held by the caller."""
    store = context.store
    large = len(group) == 1 and group[0].row_count > context.settings.group_max_rows
    # a large job is PROCESSING in its durable record too: should its worker die, recovery counts that
    # against it; a small job cannot run a worker out of memory, and saves the write
    store.update_all(
        group, durable=large, status=JobStatus.PROCESSING.value, started_at=iso(utc_now()), processed_count=0
    )
    started = time.perf_counter()
    try:
        if large:
            _prepare_large(context, group[0])
        else:
            _prepare_small(context, group)
    except Exception as error:
        if is_transient(error):
            _wait_and_retry(context, group, error)
            raise TransientError(f"preparing interrupted, to be retried: {error}", job_id=group[0].job_id) from error
        if len(group) > 1:
            logger.warning("%d small jobs prepared together failed (%s); preparing each alone", len(group), error)
            for record in group:
                try:
                    prepare_group(context, [record])
                except TransientError:
                    raise
                except Exception:  # that job is FAILED now, with its reason; the next ones still run
                    pass
            return
        message = error.message if isinstance(error, TerminalError) else f"import failed: {error}"
        fail_job(context.store, context.queues, group[0], message, None if isinstance(error, TerminalError) else error)
        raise
    finally:
        for record in group:
            if not record.is_open:
                release_ended(store.files(record))
    seconds = time.perf_counter() - started
    with metrics.batched(store.redis) as pipe:
        for record in group:
            metrics.observe(pipe, "stockyard_stage_duration_seconds", seconds / len(group), record.kind, "prepare")
    for record in group:
        outcome = "failed" if record.status == JobStatus.FAILED.value else "ready to apply"
        logs.job_stage(logger, "prepared", record, outcome, seconds, prepared_with=len(group) - 1 or None)


def _wait_and_retry(context: Context, group: list[JobRecord], error: BaseException) -> None:
    """A transient failure: the jobs go back to PENDING with the reason and when they are tried again
    (1 s, doubling up to MAX_RETRY_SECONDS); recovery queues them again then. Recorded durably if the
    disk lets us, else in Redis only (a full disk is the usual reason), and never counted as a crash."""
    reason = transient_reason(error)
    for record in group:
        record.transient_failures += 1
        delay = min(2.0 ** (record.transient_failures - 1), MAX_RETRY_SECONDS)
        changes: dict[str, Any] = {
            "status": JobStatus.PENDING.value,
            "started_at": None,
            "processed_count": 0,
            "waiting_reason": f"{reason}; tried again in {delay:.0f} s",
            "retry_at": time.time() + delay,
        }
        try:
            context.store.update(record, **changes)
        except Exception:
            with contextlib.suppress(Exception):
                context.store.update(record, durable=False, **changes)
    logger.warning("%d job(s) wait for transient trouble to pass: %s", len(group), reason)
    time.sleep(_TRANSIENT_BACKOFF_SECONDS)


def transient_reason(error: BaseException) -> str:
    """What a job waits for, in words for its status."""
    if isinstance(error, redis.RedisError):
        return f"waiting for Redis ({error})"
    code = error.errno if isinstance(error, OSError) else None
    found = _OS_ERROR.search(str(error))
    code = code if code is not None else (int(found.group(1)) if found else None)
    if code is None:
        code = next((c for c in _TRANSIENT_ERRNOS if os.strerror(c) in str(error)), None)
    if code is not None:
        return f"waiting for storage: {os.strerror(code)} ({errno.errorcode.get(code, code)})"
    return f"waiting for storage: {str(error).splitlines()[0]}"


def missing_upload(contract: Contract, files: JobFiles) -> str | None:
    """Why the job cannot be prepared because its staged files are gone, or None when they are there (or the
    body the API kept for a worker to stage is)."""
    missing = [path.name for path in [files.rows, *([files.lines] if contract.has_lines else [])] if not path.exists()]
    if missing and files.upload.exists():
        return None
    return f"import failed: the staged upload of this job is missing ({', '.join(missing)})" if missing else None


def _scan_staged(contract: Contract, files: JobFiles, job_id: str) -> tuple[pl.LazyFrame, pl.LazyFrame | None]:
    """The staged rows (and lines) of a job, to be read as needed; a body the API kept is staged first."""
    problem = missing_upload(contract, files)
    if problem is not None:
        raise TerminalError(problem, job_id=job_id)
    if files.upload.exists():
        lines = files.lines if contract.has_lines else None
        hooks.stage_pause(job_id)
        try:
            stage_kept_body(contract, files.upload, files.rows, lines)
        except BadRequestError as error:
            raise TerminalError(f"import failed: {error.message}", job_id=job_id) from None
        except ServiceUnavailableError as error:  # storage full or not writable: the body waits for it
            raise TransientError(error.message, job_id=job_id) from None
    return pl.scan_parquet(files.rows), pl.scan_parquet(files.lines) if contract.has_lines else None


def _prepare_small(context: Context, group: list[JobRecord]) -> None:
    """Validate and transform the jobs in one call each (job k's rows shifted by k * stride), then write each."""
    contract = KINDS[group[0].kind].contract
    rows: list[pl.DataFrame] = []
    lines: list[pl.DataFrame] = []
    for index, record in enumerate(group):
        shift = (pl.col(ROW).cast(pl.Int64()) + index * GROUP_ROW_STRIDE).alias(ROW)
        job_rows, job_lines = _scan_staged(contract, context.store.files(record), record.job_id)
        rows.append(job_rows.with_columns(shift).collect())
        if job_lines is not None:
            lines.append(job_lines.with_columns(shift).collect())
    validated = validate(
        contract,
        pl.concat(rows, how="diagonal_relaxed"),
        pl.concat(lines, how="diagonal_relaxed") if contract.has_lines else None,
    )
    errors = _by_job(validated.errors.with_columns(_job_of("row")), len(group))
    prepared = transform_group(group[0].kind, [record.organization_id for record in group], validated)
    for index, record in enumerate(group):
        _write_issues(context.store.files(record).errors, errors[index])
        failed = errors[index].get_column("row").n_unique()
        _finish(context, record, prepared[index], failed, errors[index].height)
    # each durable record, the last first (a lane that finds one of them prepared finds those after it
    # prepared too, and applies them together), then all copies in Redis in one round trip
    context.store.save(group[::-1])
    for organization_id in dict.fromkeys(record.organization_id for record in group):
        context.queues.kick_apply(organization_id)  # once all are prepared: they can be applied together


def transform_group(kind: str, organizations: Sequence[str], validated: Validated) -> list[Prepared]:
    """Transform the validated rows of a group's jobs (job k's numbered from k * stride, of organizations[k])
    in one call, and split the result into each job's, as if each had been transformed alone (see
    transforms/common.py): the fixed cost of a transform is most of a small job's."""
    count = len(organizations)
    if count == 1:  # a job alone: its own transform, with nothing to number or split (half the cost)
        return [KINDS[kind].prepare(validated, organizations[0])]
    organization = pl.col(JOB).replace_strict(list(range(count)), list(organizations), return_dtype=pl.String())
    numbered = Validated(
        rows=validated.rows.with_columns(_job_of(ROW)),
        lines=validated.lines.with_columns(_job_of(ROW)) if validated.lines is not None else None,
        errors=validated.errors,
    )
    prepared = KINDS[kind].prepare(numbered, organization)
    del numbered
    rows, warnings = _by_job(prepared.rows, count), _by_job(prepared.warnings, count)
    lines = _by_job(prepared.lines, count) if prepared.lines is not None else [None] * count
    references = {table: _by_job(frame, count) for table, frame in prepared.references.items()}
    return [
        Prepared(
            rows=rows[index],
            lines=lines[index],
            references={table: frames[index] for table, frames in references.items()},
            warnings=warnings[index],
        )
        for index in range(count)
    ]


def _job_of(column: str) -> list[pl.Expr]:
    """JOB from a group's shifted row numbers, and the numbers within each job again."""
    return [(pl.col(column) // GROUP_ROW_STRIDE).alias(JOB), pl.col(column) % GROUP_ROW_STRIDE]


def _by_job(frame: pl.DataFrame, count: int) -> list[pl.DataFrame]:
    """Each of the `count` jobs' part of a frame that carries JOB, without it (one partition, not a filter
    per job: a group of 50 jobs would scan its frames 50 times)."""
    pieces = frame.partition_by(JOB, as_dict=True, include_key=False)
    empty = frame.drop(JOB).clear()
    return [pieces.get((index,), empty) for index in range(count)]


def _prepare_large(context: Context, record: JobRecord) -> None:
    """Validate a chunk at a time (errors straight to disk), then transform and write the job.

    A body the API kept for the worker is streamed (staging/large_json.py): read a chunk at a time by DuckDB
    while the chunk before is validated, with only the rows that failed kept for the failed-rows download.
    One that needs staging whole (NotStreamable) is staged so first, as any other upload is before its 202."""
    contract = KINDS[record.kind].contract
    files = context.store.files(record)
    if files.upload.exists():
        chunk_rows = validation_chunk_rows(context.settings, record.row_count, files.upload.stat().st_size)
        hooks.stage_pause(record.job_id)

        def validate_and_finish(chunks: Iterator[Chunk]) -> None:
            with FailedRowsWriter(files) as failed:
                _validate_and_finish(context, record, chunks, failed)

        try:
            read_kept_body(contract, files.upload, chunk_rows, validate_and_finish)
            return
        except NotStreamable as reason:
            logger.info("job %s: its body is staged whole before it is validated (%s)", record.job_id, reason)
    rows, lines = _scan_staged(contract, files, record.job_id)
    height = rows.select(pl.len()).collect().item()
    staged = [files.rows, *([files.lines] if contract.has_lines else [])]
    chunk_rows = validation_chunk_rows(context.settings, height, staged_text_bytes(staged))
    _validate_and_finish(context, record, staged_chunks(rows, lines, chunk_rows, height), None)


def validation_chunk_rows(settings: Settings, row_count: int, text_bytes: int) -> int:
    """How many rows of a large job to validate at a time: STOCKYARD_VALIDATION_CHUNK_ROWS, or fewer, so that
    a chunk holds about STOCKYARD_VALIDATION_CHUNK_BYTES of the rows' `text_bytes` in all."""
    if row_count <= 0 or text_bytes <= 0:
        return settings.validation_chunk_rows
    fitting = settings.validation_chunk_bytes * row_count // text_bytes
    return max(1, min(settings.validation_chunk_rows, fitting))


STAGED_SAMPLE_ROWS = 1000
"""Staged rows read, from across the file, to estimate the size of all of them (staged_text_bytes)."""


def staged_text_bytes(staged: Iterable[Path]) -> int:
    """The staged rows of Parquet files as they are in memory, estimated from the first rows of each of their
    row groups: Parquet's own sizes are of its encoded pages, where a column of few distinct values weighs
    far less than its text, and a file's first rows alone may be lighter than the rest."""
    total = 0
    for path in staged:
        parquet = pq.ParquetFile(path)
        groups, rows = parquet.metadata.num_row_groups, parquet.metadata.num_rows
        if not rows:
            continue
        per_group = max(1, STAGED_SAMPLE_ROWS // groups)
        sample = [next(parquet.iter_batches(batch_size=per_group, row_groups=[group])) for group in range(groups)]
        sampled = sum(batch.num_rows for batch in sample)
        total += sum(batch.nbytes for batch in sample) * rows // max(sampled, 1)
    return total


def _validate_and_finish(
    context: Context, record: JobRecord, chunks: Iterable[Chunk], failed: FailedRowsWriter | None
) -> None:
    files = context.store.files(record)

    def on_errors(errors: pl.DataFrame, chunk: Chunk) -> None:
        issues.write(errors)
        if failed is not None:
            failed.write(errors, chunk)

    def between_chunks(done: int) -> None:
        context.store.update(record, durable=False, processed_count=done)
        hooks.prepare_pause(record.job_id)
        prepare_waiting_small_jobs(context)

    with IssueWriter(files.errors) as issues:
        validated = validate_chunks(KINDS[record.kind].contract, chunks, record.row_count, on_errors, between_chunks)
    prepared = KINDS[record.kind].prepare(validated, record.organization_id)
    del validated
    if failed is not None:
        failed.commit()  # before the record says prepared: the download of a prepared job finds them
    _finish(context, record, prepared, issues.failed_rows, issues.count)
    context.store.save([record])
    context.queues.kick_apply(record.organization_id)


def staged_chunks(rows: pl.LazyFrame, lines: pl.LazyFrame | None, chunk_rows: int, height: int) -> Iterator[Chunk]:
    """Staged rows (and their lines) `chunk_rows` rows at a time: one chunk of their raw text in memory at once
    (at least one chunk, empty for an empty upload)."""
    for start in range(0, max(height, 1), chunk_rows):
        chunk = rows.slice(start, chunk_rows).collect()
        chunk_lines = None
        if lines is not None and chunk.height:  # by the chunk's own rows: NDJSON rows skip blank lines
            first, last = chunk.get_column(ROW).min(), chunk.get_column(ROW).max()
            chunk_lines = lines.filter(pl.col(ROW).is_between(first, last)).collect()
        yield chunk, chunk_lines


def validate_in_chunks(
    contract: Contract,
    rows: pl.LazyFrame,
    lines: pl.LazyFrame | None,
    chunk_rows: int,
    on_errors: Callable[[pl.DataFrame], None],
    between_chunks: Callable[[int], None] | None = None,
) -> Validated:
    """Validate staged rows `chunk_rows` at a time (staged_chunks, validate_chunks)."""
    height = rows.select(pl.len()).collect().item()
    chunks = staged_chunks(rows, lines, chunk_rows, height)
    return validate_chunks(contract, chunks, height, lambda errors, _: on_errors(errors), between_chunks)


def validate_chunks(
    contract: Contract,
    chunks: Iterable[Chunk],
    row_count: int,
    on_errors: Callable[[pl.DataFrame, Chunk], None],
    between_chunks: Callable[[int], None] | None = None,
) -> Validated:
    """Validate staged rows a chunk at a time: each chunk's errors go to `on_errors` with the chunk (the result
    holds none), and `between_chunks` hears how many of the `row_count` rows are done after each chunk but
    the last."""
    parts: list[Validated] = []
    done = 0
    for chunk in chunks:
        part = validate(contract, *chunk)
        on_errors(part.errors, chunk)
        parts.append(Validated(rows=part.rows, lines=part.lines, errors=empty_errors()))
        done += chunk[0].height
        del chunk, part
        if between_chunks is not None and done < row_count:
            between_chunks(done)
    return Validated(
        rows=pl.concat([p.rows for p in parts]),
        lines=pl.concat([p.lines for p in parts if p.lines is not None]) if contract.has_lines else None,
        errors=empty_errors(),
    )


class FailedRowsWriter:
    """The staged text of the rows that failed (and their lines), kept for the failed-rows download of a job
    whose body was streamed rather than staged whole; written as they come, committed with `commit`."""

    def __init__(self, files: JobFiles) -> None:
        self.paths = [files.failed_rows, files.failed_lines]
        self._writers: list[pq.ParquetWriter | None] = [None, None]

    def __enter__(self) -> FailedRowsWriter:
        return self

    def write(self, errors: pl.DataFrame, chunk: Chunk) -> None:
        rejected = errors.get_column("row").unique().implode()
        for index, frame in enumerate(chunk):
            if frame is None:
                continue
            table = frame.filter(pl.col(ROW).is_in(rejected)).to_arrow()
            writer = self._writers[index]
            if writer is None:  # the first chunk's, failures or none: the file is there whatever happens
                writer = self._writers[index] = pq.ParquetWriter(temporary_path(self.paths[index]), table.schema)
            writer.write_table(table.cast(writer.schema))

    def commit(self) -> None:
        for path, writer in zip(self.paths, self._writers, strict=True):
            if writer is not None:
                writer.close()
                commit_file(temporary_path(path), path)
        self._writers = [None, None]

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        for writer in self._writers:
            if writer is not None:
                writer.close()
        if error is not None:
            remove_quietly(*self.paths)


class IssueWriter:
    """Errors (or warnings) written to their Parquet file as they come, in row order; committed on exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = temporary_path(path)
        self.count = 0
        self.failed_rows = 0
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> IssueWriter:
        schema = pl.DataFrame(schema={c: ERROR_SCHEMA[c] for c in ISSUE_COLUMNS}).to_arrow().schema
        self._writer = pq.ParquetWriter(self.tmp, schema)
        return self

    def write(self, issues: pl.DataFrame) -> None:
        if issues.is_empty() or self._writer is None:
            return
        self.count += issues.height
        self.failed_rows += issues.get_column("row").n_unique()  # a row's issues all come in one chunk
        table = issues.select(ISSUE_COLUMNS).to_arrow()
        self._writer.write_table(table.cast(self._writer.schema))

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if self._writer is not None:
            self._writer.close()
        if error is None and self.count:
            commit_file(self.tmp, self.path)
        else:  # none at all: no file (most jobs), and none left by an earlier try either
            remove_quietly(self.tmp, self.path)


def _write_issues(path: Path, issues: pl.DataFrame) -> None:
    if issues.is_empty():
        remove_quietly(path)  # none: no file (most jobs have neither errors nor warnings)
        return
    with IssueWriter(path) as writer:
        writer.write(issues.sort("row", "position", maintain_order=True))


def _finish(context: Context, record: JobRecord, prepared: Prepared, failed: int, error_count: int) -> None:
    """Write what apply needs of the transformed job, and mark it prepared (the caller saves the record)."""
    files = context.store.files(record)
    ordered = prepared.warnings.sort("row", maintain_order=True)
    warnings = pl.concat([unknown_field_warnings(record), ordered], how="diagonal_relaxed")
    _write_issues(files.warnings, warnings)
    write_prepared(files, prepared, in_one_file=record.row_count <= context.settings.group_max_rows)
    record.prepared = True
    record.failed_count = failed
    record.error_count = error_count
    record.warning_count = warnings.height
    record.waiting_reason = None
    record.retry_at = None
    record.transient_failures = 0


def warm_up() -> None:
    """Read, validate and transform two rows of every kind, writing nothing that stays: a worker's first
    large job then does not pay for loading pandera's backends and DuckDB's staging database (0.1-0.15 s,
    measured on 1M rows). Run by a new worker, beside its loop, which may end (or be killed) meanwhile:
    the bodies are a few files of a fixed place that every worker replaces, never one directory each."""
    directory = warm_up_directory()
    directory.mkdir(mode=0o700, exist_ok=True)
    for kind in KINDS.values():
        contract = kind.contract
        row: dict[str, object] = {field.name: field.example for field in contract.fields}
        if contract.has_lines:
            row["lines"] = [{field.name: field.example for field in contract.line_fields}]
        body = directory / f"{contract.kind}.json"
        written = body.with_name(f"{body.name}.{os.getpid()}.tmp")
        written.write_bytes(msgspec.json.encode([row, row]))
        os.replace(written, body)  # whole, whoever reads it: another worker may be warming up too
        with kept_body_chunks(contract, body, 1000) as chunks:
            validated = validate_chunks(contract, chunks, 2, lambda errors, chunk: None)
        kind.prepare(validated, "warm-up")


def warm_up_directory() -> Path:
    """The warm-up's bodies: one per kind, in the system's temporary directory, for every worker of this user."""
    return Path(tempfile.gettempdir()) / f"stockyard-warm-up-{os.getuid()}"


def unknown_field_warnings(record: JobRecord) -> pl.DataFrame:
    """One warning for each field sent that the contract does not name (its values were not stored)."""
    kind = record.kind
    rows = [
        {
            "row": None,
            "field": name,
            "code": ErrorCode.UNKNOWN_FIELD.value,
            "message": f"{name} is not a field of {kind}: it was not stored"
            + (f" ({had:,} of the first {looked:,} rows have it)" if looked < record.row_count else ""),
            "value": None,
            "position": None,
        }
        for name, had, looked in record.unknown_fields
    ]
    return pl.DataFrame(rows, schema=ERROR_SCHEMA)


def write_prepared(files: JobFiles, prepared: Prepared, *, in_one_file: bool = False) -> None:
    """The prepared rows, lines and references beside the staged files, written durably.

    `in_one_file` (small jobs): all in one Arrow file, a row holding a list of structs per part, which is
    one write and one fsync instead of up to five, and uncompressed: compressing is most of the cost of a
    small file. A large job's parts get a Parquet file each, read a row group at a time (one cell of
    millions is written and read whole)."""
    parts = {"rows": prepared.rows, **({"lines": prepared.lines} if prepared.lines is not None else {})}
    parts.update(prepared.references)
    written = [files.prepared_all] if in_one_file else [_part_path(files, name) for name in parts]
    remove_quietly(*(path for path in files.prepared if path not in written))  # an earlier try's
    if in_one_file:
        whole = pl.DataFrame([pl.Series(name, [frame.to_struct()]) for name, frame in parts.items()])
        tmp = temporary_path(files.prepared_all)
        feather.write_feather(whole.to_arrow(), tmp, compression="uncompressed")
        commit_file(tmp, files.prepared_all)
        return
    for name, frame in parts.items():
        path = _part_path(files, name)
        tmp = temporary_path(path)
        frame.write_parquet(tmp, compression="lz4", statistics=False)
        commit_file(tmp, path)


def _part_path(files: JobFiles, part: str) -> Path:
    return {"rows": files.prepared_rows, "lines": files.prepared_lines}.get(part) or files.prepared_references(part)


def has_prepared(files: JobFiles, has_lines: bool) -> bool:
    """Are the prepared files of the job there (in one file, or a file each)?"""
    return files.prepared_all.exists() or (
        files.prepared_rows.exists() and (not has_lines or files.prepared_lines.exists())
    )


def stored_prepared(files: JobFiles, has_lines: bool) -> StoredJob | None:
    """A large job's prepared parts as the files they are, for the warehouse to read itself; None when the job
    was written in one file (a small job), or its files are not all there."""
    if files.prepared_all.exists() or not has_prepared(files, has_lines):
        return None
    return StoredJob(
        rows=files.prepared_rows,
        lines=files.prepared_lines if has_lines else None,
        references={
            table: files.prepared_references(table)
            for table in REFERENCE_TABLES
            if files.prepared_references(table).exists()
        },
    )


def read_prepared(files: JobFiles, has_lines: bool) -> Prepared:
    """What prepare wrote for the job (service/apply.py merges it)."""
    try:
        whole = pl.from_arrow(feather.read_table(files.prepared_all, memory_map=False))
    except FileNotFoundError:
        if not has_prepared(files, has_lines):
            raise FileNotFoundError(f"the prepared files of job {files.job_id} are missing") from None
        parts = {
            name: pl.read_parquet(_part_path(files, name)) for name in ("rows", "lines") if name == "rows" or has_lines
        }
        parts.update(
            (table, pl.read_parquet(files.prepared_references(table)))
            for table in REFERENCE_TABLES
            if files.prepared_references(table).exists()
        )
    else:
        assert isinstance(whole, pl.DataFrame)
        parts = {name: whole.get_column(name)[0].struct.unnest() for name in whole.columns}
    return Prepared(
        rows=parts["rows"],
        lines=parts["lines"] if has_lines else None,
        references={table: parts[table] for table in REFERENCE_TABLES if table in parts},
    )


def fail_job(
    store: JobStore, queues: Queues, record: JobRecord, message: str, cause: BaseException | None = None
) -> None:
    """Mark an accepted job FAILED for good (nothing of it applied), with the reason for its status; the
    applier writes its import_jobs row in its turn. `cause`, an unexpected error, is logged with its traceback."""
    record.status = JobStatus.FAILED.value
    record.completed_at = iso(utc_now())
    record.job_error = message
    record.processed_count = 0
    record.failed_count = record.row_count
    record.recorded = False
    notify_job_ended(store.settings, [record])
    store.save([record])
    count_failed(store.redis, record)
    logs.job_stage(logger, "failed", record, message, level=logging.WARNING, cause=cause)
    try:
        queues.kick_apply(record.organization_id)
    except redis.RedisError:  # recovery asks for it again
        logger.warning("could not ask the applier to record the failure of job %s", record.job_id)


def count_failed(connection: redis.Redis, record: JobRecord) -> None:
    """The metrics of a job that failed as a whole."""
    metrics.count(connection, "stockyard_jobs_failed", record.kind)
    created, completed = parse_iso(record.created_at), parse_iso(record.completed_at)
    if created is not None and completed is not None:
        duration = (completed - created).total_seconds()
        metrics.observe(connection, "stockyard_job_duration_seconds", duration, record.kind)
