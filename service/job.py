"""An import job: its state, declared once.

`JobRecord` is the job as Stockyard keeps it (the durable file beside its staged rows, and its copy in
Redis). Each field says, in its metadata, what it is called in the job status (`wire`) and as a column
of the warehouse's `import_jobs` table (`column`), so that the status view (service/views.py) and the
table (service/warehouse.py) are derived from this one declaration.

A job's life: PENDING (accepted, queued to prepare) -> PROCESSING (a worker prepares it; then
`prepared`, waiting for its turn to be applied) -> COMPLETED (merged) or FAILED (nothing of it
applied, `job_error` says why). A FAILED job is `recorded` once its import_jobs row is written; a
COMPLETED one is recorded by the commit that merged it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

logger = logging.getLogger("stockyard.job")


class JobStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


def _field(*, wire: str | None = None, column: str | None = None, default: Any = None, required: bool = False) -> Any:
    metadata = {"wire": wire, "column": column}
    if required:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class JobRecord:
    job_id: str = _field(wire="jobId", column="job_id VARCHAR NOT NULL", required=True)
    organization_id: str = _field(column="organization_id VARCHAR NOT NULL", required=True)
    kind: str = _field(wire="type", column="type VARCHAR NOT NULL", required=True)
    status: str = _field(wire="status", column="status VARCHAR NOT NULL", required=True)
    row_count: int = _field(wire="rowCount", column="row_count BIGINT NOT NULL", required=True)
    created_at: str = _field(wire="createdAt", column="created_at TIMESTAMP NOT NULL", required=True)
    processed_count: int = _field(wire="processedCount", column="processed_count BIGINT NOT NULL", default=0)
    failed_count: int = _field(wire="failedCount", column="failed_count BIGINT NOT NULL", default=0)
    started_at: str | None = _field(wire="startedAt", column="started_at TIMESTAMP")
    completed_at: str | None = _field(wire="completedAt", column="completed_at TIMESTAMP")
    sequence: int = _field(default=0)
    """The organization's acceptance order: jobs of one organization are applied by it."""
    upload_format: str = _field(default="json")
    """How the rows were sent (staging.UploadFormat); failed rows are returned so."""
    job_error: str | None = _field()
    """Why a FAILED job failed."""
    job_error_code: str = _field(default="job_failed")
    """The code of that job-level error: `job_failed`, or `cancelled`."""
    error_count: int = _field(default=0)
    warning_count: int = _field(default=0)
    prepared: bool = _field(default=False)
    """The prepared files are written: the job waits for its turn to be applied."""
    recorded: bool = _field(default=False)
    """The warehouse's import_jobs row is written."""
    attempts: int = _field(default=0)
    """Preparations of this job that a dead worker left unfinished."""
    waiting_reason: str | None = _field()
    """Why an open job waits: transient trouble (a full disk, Redis refusing writes) it is retried after."""
    retry_at: float | None = _field()
    """When (epoch seconds) a job that met transient trouble is tried again."""
    transient_failures: int = _field(default=0)
    """Tries in a row that met transient trouble: the wait before the next one doubles with them."""
    dry_run: bool = _field(wire="dryRun", default=False)
    """Validated and transformed as a real import, counted against the warehouse, and nothing written."""
    would_insert: int | None = _field(wire="wouldInsert")
    would_update: int | None = _field(wire="wouldUpdate")
    would_leave_unchanged: int | None = _field(wire="wouldLeaveUnchanged")
    """A dry run's counts: rows it would insert, update, and leave as they are."""

    @property
    def is_open(self) -> bool:
        """Accepted and not finished: PENDING or PROCESSING."""
        return self.status in (JobStatus.PENDING, JobStatus.PROCESSING)

    @property
    def is_settled(self) -> bool:
        """Finished, and its import_jobs row written: nothing is left to do for it."""
        return not self.is_open and self.recorded

    @property
    def index_member(self) -> str:
        return f"{self.organization_id}/{self.job_id}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

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


WIRE_FIELDS: dict[str, str] = {f.name: f.metadata["wire"] for f in fields(JobRecord) if f.metadata["wire"]}
"""Record field -> its name in the job status, in the status's order."""
OPTIONAL_WIRE_FIELDS = {"dry_run", "would_insert", "would_update", "would_leave_unchanged"}
"""Fields the status shows only for the jobs that have them (dry runs)."""
WAREHOUSE_COLUMNS: dict[str, str] = {f.name: f.metadata["column"] for f in fields(JobRecord) if f.metadata["column"]}
"""Record field -> its import_jobs column definition."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    """A record's timestamp as the warehouse stores it: naive UTC."""
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)


def acceptance_score(record: JobRecord) -> float:
    """Orders jobs as they were accepted, across organizations: createdAt, in seconds."""
    created = parse_iso(record.created_at)
    return created.replace(tzinfo=UTC).timestamp() if created is not None else 0.0


def acceptance_order(record: JobRecord) -> tuple[int, float, str]:
    """Orders one organization's jobs as they were accepted: by sequence (records written before the
    sequence existed have 0, and fall back to createdAt)."""
    return record.sequence, acceptance_score(record), record.job_id


def job_level_error(message: str, code: str = "job_failed") -> dict[str, Any]:
    """The one error of a FAILED job: row null."""
    return {"row": None, "field": None, "code": code, "message": message, "value": None}
