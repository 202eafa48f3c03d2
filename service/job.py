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

import logging
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec

logger = logging.getLogger("stockyard.job")
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()


class JobStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


def _field(
    *,
    wire: str | None = None,
    column: str | None = None,
    doc: str = "",
    example: Any = None,
    default: Any = None,
    default_factory: Any = None,
    required: bool = False,
) -> Any:
    """`doc` and `example` describe a field of the status and a column of import_jobs (the OpenAPI
    document and the warehouse's comments are made from them)."""
    metadata = {"wire": wire, "column": column, "doc": doc, "example": example}
    if required:
        return field(metadata=metadata)
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class JobRecord:
    job_id: str = _field(
        wire="jobId",
        column="job_id VARCHAR NOT NULL",
        doc="The job's id: 32 hexadecimal characters, random.",
        example="3f2a9c1b7d4e4f0a9b8c7d6e5f4a3b2c",
        required=True,
    )
    organization_id: str = _field(
        column="organization_id VARCHAR NOT NULL", doc="The organization whose API key sent the import.", required=True
    )
    kind: str = _field(
        wire="type",
        column="type VARCHAR NOT NULL",
        doc="The kind of import: catalog, inventory, suppliers, purchase-orders, orders or demand-history.",
        example="inventory",
        required=True,
    )
    status: str = _field(
        wire="status",
        column="status VARCHAR NOT NULL",
        doc="PENDING (queued), PROCESSING (being validated or merged), COMPLETED (its good rows are in the"
        " warehouse) or FAILED (nothing of it was applied; the one error says why).",
        example="COMPLETED",
        required=True,
    )
    row_count: int = _field(
        wire="rowCount",
        column="row_count BIGINT NOT NULL",
        doc="Rows in the body (an order or purchase order with its lines counts as one).",
        example=2,
        required=True,
    )
    created_at: str = _field(
        wire="createdAt",
        column="created_at TIMESTAMP NOT NULL",
        doc="When the import was accepted (UTC; ISO 8601 with milliseconds in the status).",
        example="2026-12-01T09:30:00.000Z",
        required=True,
    )
    processed_count: int = _field(
        wire="processedCount",
        column="processed_count BIGINT NOT NULL",
        doc="Rows validated so far (all of them once COMPLETED): with rowCount, the job's progress.",
        example=2,
        default=0,
    )
    failed_count: int = _field(
        wire="failedCount",
        column="failed_count BIGINT NOT NULL",
        doc="Rows rejected (each has at least one error); the others were merged.",
        example=1,
        default=0,
    )
    started_at: str | None = _field(
        wire="startedAt",
        column="started_at TIMESTAMP",
        doc="When a worker began to validate it (UTC); null while PENDING.",
        example="2026-12-01T09:30:00.120Z",
    )
    completed_at: str | None = _field(
        wire="completedAt",
        column="completed_at TIMESTAMP",
        doc="When it ended, COMPLETED or FAILED (UTC); null while it runs.",
        example="2026-12-01T09:30:00.480Z",
    )
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
    unknown_fields: list[list[Any]] = _field(default_factory=list)
    """Fields sent that the contract does not name: [name, rows that had it, rows looked at] each."""
    dry_run: bool = _field(
        wire="dryRun",
        doc="A dry run (?dryRun=true): validated and counted against the warehouse, nothing written. Only"
        " present on dry runs.",
        example=True,
        default=False,
    )
    would_insert: int | None = _field(
        wire="wouldInsert", doc="A dry run's rows that are new: it would insert them.", example=1
    )
    would_update: int | None = _field(
        wire="wouldUpdate", doc="A dry run's rows that exist with other values: it would update them.", example=0
    )
    would_leave_unchanged: int | None = _field(
        wire="wouldLeaveUnchanged", doc="A dry run's rows that exist with the same values.", example=0
    )

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

    # Records are written and read many times in a job's life (every status poll reads one): msgspec's
    # JSON, a field name set built once, and the record's own dict rather than asdict's deep copy.

    def to_json(self) -> bytes:
        return _ENCODER.encode(vars(self))

    def to_redis(self) -> dict[str, bytes]:
        return {k: _ENCODER.encode(v) for k, v in vars(self).items()}

    @classmethod
    def from_redis(cls, data: dict[bytes, bytes]) -> JobRecord | None:
        """The record a Redis hash holds, or None when the hash is not a whole record."""
        try:
            return cls(**{name: _DECODER.decode(v) for k, v in data.items() if (name := k.decode()) in FIELD_NAMES})
        except (TypeError, ValueError, msgspec.DecodeError):
            return None

    @classmethod
    def from_durable(cls, path: Path) -> JobRecord | None:
        """The record a durable file holds, or None when there is no such file (or it is unreadable)."""
        try:
            data = _DECODER.decode(path.read_bytes())
            return cls(**{k: v for k, v in data.items() if k in FIELD_NAMES})
        except FileNotFoundError:
            return None
        except (OSError, TypeError, ValueError, AttributeError, msgspec.DecodeError):
            logger.warning("unreadable job record %s", path, exc_info=True)
            return None


FIELD_NAMES = frozenset(f.name for f in fields(JobRecord))
WIRE_FIELDS: dict[str, str] = {f.name: f.metadata["wire"] for f in fields(JobRecord) if f.metadata["wire"]}
"""Record field -> its name in the job status, in the status's order."""
OPTIONAL_WIRE_FIELDS = {"dry_run", "would_insert", "would_update", "would_leave_unchanged"}
"""Fields the status shows only for the jobs that have them (dry runs)."""
FIELD_DOCS: dict[str, tuple[str, Any]] = {f.name: (f.metadata["doc"], f.metadata["example"]) for f in fields(JobRecord)}
"""Record field -> what it holds and an example value, for the OpenAPI document and the table's comments."""
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
