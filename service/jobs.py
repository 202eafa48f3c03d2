"""Import jobs: their records, the queue, and `run_import`, the worker's whole job.

A job's record lives in a Redis hash (fast status reads and progress) and, from the moment it is
accepted, in a JSON file beside its staged Parquet (durable: it survives losing Redis). Errors and
warnings go to Parquet files beside them, so that a job with a million bad rows pages cheaply.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import polars as pl
import redis
import rq

from contracts import CONTRACTS
from contracts.common import ERROR_SCHEMA, ROW, Validated, validate
from service import warehouse
from service.errors import NotFoundError, TerminalError
from service.settings import Settings, get_settings
from service.staging import fsync_and_rename, staged_paths, write_record
from transforms import PREPARERS

STATUS_ERROR_LIMIT = 1000
VALIDATION_CHUNK_ROWS = 250_000
_KEY = "stockyard:job:{}"
_PUBLISHED_AT = "stockyard:published_at"


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

    def to_redis(self) -> dict[str, str]:
        return {k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_redis(cls, data: dict[bytes, bytes]) -> JobRecord:
        names = {f.name for f in fields(cls)}
        values = {k.decode(): json.loads(v) for k, v in data.items() if k.decode() in names}
        return cls(**values)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)


class JobStore:
    """Job records in Redis, mirrored to the durable record file on every state change."""

    def __init__(self, connection: redis.Redis, settings: Settings) -> None:
        self.redis = connection
        self.settings = settings

    def create(self, record: JobRecord) -> None:
        self._write_durable(record)
        self.redis.hset(_KEY.format(record.job_id), mapping=record.to_redis())  # type: ignore[arg-type]

    def get(self, job_id: str, organization_id: str | None = None) -> JobRecord:
        """The job; NotFoundError when missing or of another organization (the two look the same)."""
        data = self.redis.hgetall(_KEY.format(job_id))
        if not data:
            raise NotFoundError(f"no job {job_id}", job_id=job_id)
        record = JobRecord.from_redis(data)  # type: ignore[arg-type]
        if organization_id is not None and record.organization_id != organization_id:
            raise NotFoundError(f"no job {job_id}", job_id=job_id)
        return record

    def update(self, record: JobRecord, durable: bool = True, **changes: Any) -> JobRecord:
        for name, value in changes.items():
            setattr(record, name, value)
        if durable:
            self._write_durable(record)
        self.redis.hset(
            _KEY.format(record.job_id),
            mapping={k: json.dumps(v) for k, v in changes.items()},
        )
        return record

    def _write_durable(self, record: JobRecord) -> None:
        path = staged_paths(self.settings.staging_dir, record.organization_id, record.job_id)["record"]
        write_record(path, asdict(record))

    def queue(self) -> rq.Queue:
        return rq.Queue(self.settings.queue_name, connection=self.redis)

    def enqueue(self, record: JobRecord) -> None:
        self.queue().enqueue_call(
            "service.jobs.run_import",
            args=(record.job_id,),
            job_id=f"import-{record.job_id}",
            timeout=self.settings.job_timeout_seconds,
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
        )


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


def run_import(job_id: str) -> str:
    """Validate, transform and merge one staged job; record its outcome. Safe to run again."""
    settings = get_settings()
    current = rq.get_current_job()
    connection = current.connection if current is not None else redis.Redis.from_url(settings.effective_redis_url)
    store = JobStore(connection, settings)
    record = store.get(job_id)
    if record.status in (JobStatus.COMPLETED, JobStatus.FAILED):
        return record.status
    started = utc_now()
    record = store.update(record, status=JobStatus.PROCESSING.value, started_at=iso(started), processed_count=0)
    try:
        validated = _validate_in_chunks(store, record, settings)
        prepared = PREPARERS[record.kind](validated, record.organization_id)
        _write_issues(settings, record, validated.errors, prepared.warnings)
        failed = validated.errors.get_column("row").n_unique()
        completed = utc_now()
        outcome = warehouse.JobOutcome(
            job_id=record.job_id,
            organization_id=record.organization_id,
            kind=record.kind,
            status=JobStatus.COMPLETED.value,
            row_count=record.row_count,
            processed_count=record.row_count,
            failed_count=failed,
            created_at=parse_iso(record.created_at) or completed.replace(tzinfo=None),
            started_at=started.replace(tzinfo=None),
            completed_at=completed.replace(tzinfo=None),
        )
        with warehouse.writer_lock(settings.data_dir):
            with warehouse.open_warehouse(settings.warehouse_path) as con:
                if not warehouse.is_applied(con, job_id):
                    warehouse.apply_job(con, prepared, outcome, completed.replace(tzinfo=None))
            _publish_if_due(store, settings)
        store.update(
            record,
            status=JobStatus.COMPLETED.value,
            processed_count=record.row_count,
            failed_count=failed,
            completed_at=iso(completed),
            error_count=validated.errors.height,
            warning_count=prepared.warnings.height,
        )
    except Exception as error:  # the job as a whole failed: nothing of it is applied
        message = error.message if isinstance(error, TerminalError) else f"import failed: {error}"
        _fail(store, settings, record, message)
        raise
    return JobStatus.COMPLETED.value


def _validate_in_chunks(store: JobStore, record: JobRecord, settings: Settings) -> Validated:
    """Validate in slices of rows so that processedCount grows while a large job runs."""
    contract = CONTRACTS[record.kind]
    paths = staged_paths(settings.staging_dir, record.organization_id, record.job_id)
    if not paths["rows"].exists():
        raise TerminalError("the staged upload is missing", job_id=record.job_id)
    rows = pl.read_parquet(paths["rows"])
    lines = pl.read_parquet(paths["lines"]) if contract.has_lines else None
    parts: list[Validated] = []
    for start in range(0, max(rows.height, 1), VALIDATION_CHUNK_ROWS):
        chunk = rows.slice(start, VALIDATION_CHUNK_ROWS)
        chunk_lines = None
        if lines is not None:
            chunk_lines = lines.filter(pl.col(ROW).is_between(start, start + VALIDATION_CHUNK_ROWS - 1))
        parts.append(validate(contract, chunk, chunk_lines))
        done = min(start + VALIDATION_CHUNK_ROWS, rows.height)
        if done < rows.height:
            store.update(record, durable=False, processed_count=done)
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


def _fail(store: JobStore, settings: Settings, record: JobRecord, message: str) -> None:
    completed = utc_now()
    store.update(
        record,
        status=JobStatus.FAILED.value,
        completed_at=iso(completed),
        job_error=message,
        processed_count=0,
        failed_count=record.row_count,
    )
    outcome = warehouse.JobOutcome(
        job_id=record.job_id,
        organization_id=record.organization_id,
        kind=record.kind,
        status=JobStatus.FAILED.value,
        row_count=record.row_count,
        processed_count=0,
        failed_count=record.row_count,
        created_at=parse_iso(record.created_at) or completed.replace(tzinfo=None),
        started_at=parse_iso(record.started_at),
        completed_at=completed.replace(tzinfo=None),
    )
    try:
        with warehouse.writer_lock(settings.data_dir):
            with warehouse.open_warehouse(settings.warehouse_path) as con:
                warehouse.record_failure(con, outcome)
            _publish_if_due(store, settings)
    except Exception:  # the job record already says FAILED; the warehouse copy of it is best effort
        pass


def _publish_if_due(store: JobStore, settings: Settings) -> None:
    """Publish after the last queued job, and at least every interval while jobs keep coming."""
    last = float(store.redis.get(_PUBLISHED_AT) or 0)
    queue_empty = store.queue().count == 0
    if queue_empty or time.time() - last >= settings.publish_interval_seconds:
        warehouse.publish(settings.warehouse_path, settings.analytics_path)
        store.redis.set(_PUBLISHED_AT, time.time())
