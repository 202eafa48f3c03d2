"""What the API answers (CONTRACT.md): the envelope, the job status, pages of errors, and errors.

The job status is derived from the job record (service/job.py names each field's wire name), with the
job's first errors and warnings added: a field of the record is declared once.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, get_type_hints

import msgspec
import polars as pl

from service.job import OPTIONAL_WIRE_FIELDS, WIRE_FIELDS, JobRecord, JobStatus, job_level_error
from service.job_files import JobFiles
from service.settings import Settings

STATUS_ERROR_LIMIT = 1000
"""The status carries at most this many errors (and warnings); the paged endpoints carry all."""
MAX_PAGE = 200
"""The most jobs a page of the listing holds."""
MAX_OFFSET = 1 << 62
"""The largest offset a page may ask for (beyond, a clear 400 rather than an overflow)."""


class RowIssue(msgspec.Struct):
    """A row-level error or warning. `row` is the 0-based index in the submitted array (null for a job-level
    error); `field` the wire name (`lines[2].unitCost` inside a line); `value` the value as sent, cut to 200."""

    row: int | None
    field: str | None
    code: str
    message: str
    value: str | None


class ImportAccepted(msgspec.Struct, rename="camel"):
    job_id: str
    type: str
    status: str
    row_count: int
    created_at: str
    status_url: str


def _status_fields() -> list[tuple[str, Any] | tuple[str, Any, Any]]:
    """The status's fields: the record's wire fields in order, errors and warnings after failedCount; a
    field the record marks optional (a dry run's) is left out of a job that does not have it."""
    types = get_type_hints(JobRecord)
    defaults = {f.name: f.default for f in fields(JobRecord)}
    result: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for name, wire in WIRE_FIELDS.items():
        result.append((wire, types[name], defaults[name]) if name in OPTIONAL_WIRE_FIELDS else (wire, types[name]))
        if wire == "failedCount":
            result += [("errors", list[RowIssue]), ("warnings", list[RowIssue])]
    return result


JobStatusView = msgspec.defstruct("JobStatusView", _status_fields(), module=__name__, kw_only=True, omit_defaults=True)
"""`GET /api/import/status/{jobId}`: the job with its counts, and its first errors and warnings."""
JobSummaryView = msgspec.defstruct(
    "JobSummaryView",
    [item for item in _status_fields() if item[0] not in ("errors", "warnings")],
    module=__name__,
    kw_only=True,
    omit_defaults=True,
)
"""A job in a listing: the status without its errors and warnings."""


class JobList(msgspec.Struct, rename="camel"):
    """`GET /api/import/jobs`: a page of the organization's jobs, newest first."""

    items: list[Any]
    next_cursor: str | None


def summary_view(record: JobRecord) -> Any:
    return JobSummaryView(**{wire: getattr(record, name) for name, wire in WIRE_FIELDS.items()})


class IssuePage(msgspec.Struct, rename="camel"):
    job_id: str
    offset: int
    limit: int
    total: int
    items: list[RowIssue]


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """Every error: its HTTP status and what went wrong, for the caller (and a code, where one helps)."""

    status_code: int
    detail: str
    code: str | None = None


def read_issues(files: JobFiles, kind: str, offset: int, limit: int) -> list[dict[str, Any]]:
    """A page of a job's errors or warnings (`kind`), in row order."""
    path = files.errors if kind == "errors" else files.warnings
    if not path.exists():
        return []
    return pl.scan_parquet(path).slice(offset, limit).collect().to_dicts()


def issues(items: list[dict[str, Any]]) -> list[RowIssue]:
    return [RowIssue(**item) for item in items]


def status_view(record: JobRecord, settings: Settings) -> Any:
    files = JobFiles.of(settings.staging_dir, record.organization_id, record.job_id)
    if record.status == JobStatus.FAILED.value:
        errors = [RowIssue(**job_level_error(record.job_error or "import failed", record.job_error_code))]
    else:
        errors = issues(read_issues(files, "errors", 0, STATUS_ERROR_LIMIT))
    values = {wire: getattr(record, name) for name, wire in WIRE_FIELDS.items()}
    warnings = issues(read_issues(files, "warnings", 0, STATUS_ERROR_LIMIT))
    if record.is_open and record.waiting_reason:  # transient trouble: the job waits and is tried again
        warnings.insert(0, RowIssue(row=None, field=None, code="retrying", message=record.waiting_reason, value=None))
    return JobStatusView(**values, errors=errors, warnings=warnings)
