"""What the API answers (CONTRACT.md): the envelope, the job status, pages of errors, and errors.

The job status is derived from the job record (service/job.py names each field's wire name), with the
job's first errors and warnings added: a field of the record is declared once.
"""

from __future__ import annotations

import functools
from dataclasses import fields
from typing import Annotated, Any, get_type_hints

import msgspec
import polars as pl

from contracts.common import ErrorCode
from service.job import FIELD_DOCS, OPTIONAL_WIRE_FIELDS, WIRE_FIELDS, JobRecord, JobStatus, job_level_error
from service.job_files import JobFiles
from service.settings import Settings

STATUS_ERROR_LIMIT = 1000
"""The status carries at most this many errors (and warnings); the paged endpoints carry all."""
MAX_PAGE = 200
"""The most jobs a page of the listing holds."""
MAX_OFFSET = 1 << 62
"""The largest offset a page may ask for (beyond, a clear 400 rather than an overflow)."""


def _doc(description: str, example: Any = None) -> msgspec.Meta:
    """A field's description and example, as the OpenAPI document shows them."""
    return msgspec.Meta(description=description, examples=None if example is None else [example])


_ROW_CODES = ", ".join(f"`{code.value}`" for code in ErrorCode if code is not ErrorCode.UNKNOWN_FIELD)


class RowIssue(msgspec.Struct):
    """A row-level error or warning, or (row null) one about the whole job."""

    row: Annotated[
        int | None,
        _doc(
            "The 0-based index of the row in the submitted array (for NDJSON and CSV, the record); null for an"
            " error or warning about the whole job.",
            1,
        ),
    ]
    field: Annotated[
        str | None,
        _doc(
            "The wire name of the field (`lines[2].unitCost` inside a line); null when no one field is",
            "quantityOnHand",
        ),
    ]
    code: Annotated[
        str,
        _doc(
            f"What is wrong: {_ROW_CODES} for a row; `job_failed` or `cancelled` for a FAILED job;"
            " `retrying` (a warning) while a job waits for transient trouble to pass; `unknown_field` (a"
            " warning, row null) for a field the contract does not name.",
            "invalid_type",
        ),
    ]
    message: Annotated[str, _doc("What is wrong, for a person.", "quantityOnHand must be a number")]
    value: Annotated[str | None, _doc("The value as sent, as text, cut to 200 characters; null when missing.", "abc")]


class ImportAccepted(msgspec.Struct, rename="camel"):
    """The answer to an import: its job, queued."""

    job_id: Annotated[str, _doc(*FIELD_DOCS["job_id"])]
    type: Annotated[str, _doc(*FIELD_DOCS["kind"])]
    status: Annotated[
        JobStatus, _doc("PENDING when accepted (an Idempotency-Key replay: the job's status now).", "PENDING")
    ]
    row_count: Annotated[int, _doc(*FIELD_DOCS["row_count"])]
    created_at: Annotated[str, _doc(*FIELD_DOCS["created_at"])]
    status_url: Annotated[
        str,
        _doc(
            "Where to follow the job (also the Location header).",
            "/api/import/status/3f2a9c1b7d4e4f0a9b8c7d6e5f4a3b2c",
        ),
    ]


def _status_fields() -> list[tuple[str, Any] | tuple[str, Any, Any]]:
    """The status's fields: the record's wire fields in order, errors and warnings after failedCount; a
    field the record marks optional (a dry run's) is left out of a job that does not have it."""
    types = get_type_hints(JobRecord)
    defaults = {f.name: f.default for f in fields(JobRecord)}
    result: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for name, wire in WIRE_FIELDS.items():
        kind = JobStatus if name == "status" else types[name]
        documented = Annotated[kind, _doc(*FIELD_DOCS[name])]  # type: ignore[valid-type]
        result.append((wire, documented, defaults[name]) if name in OPTIONAL_WIRE_FIELDS else (wire, documented))
        if wire == "failedCount":
            for issue in ("errors", "warnings"):
                every = f"The first {STATUS_ERROR_LIMIT:,} {issue}, in row order (all of them: .../{issue})."
                result.append((issue, Annotated[list[RowIssue], _doc(every)]))
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

    items: Annotated[list[JobSummaryView], _doc("The jobs of the page, newest first.")]  # type: ignore[valid-type]
    next_cursor: Annotated[str | None, _doc("Pass as `cursor` for the next page; null on the last one.", "YWZ0ZXI6MTI")]


def summary_view(record: JobRecord) -> Any:
    return JobSummaryView(**{wire: getattr(record, name) for name, wire in WIRE_FIELDS.items()})


class IssuePage(msgspec.Struct, rename="camel"):
    """A page of a job's errors or warnings, in row order."""

    job_id: Annotated[str, _doc(*FIELD_DOCS["job_id"])]
    offset: Annotated[int, _doc("The index of the page's first entry among all of them.", 0)]
    limit: Annotated[int, _doc("The most entries a page holds.", 1000)]
    total: Annotated[int, _doc("How many there are in all.", 1)]
    items: Annotated[list[RowIssue], _doc("The page's errors or warnings, in row order.")]


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """Every error: its HTTP status and what went wrong, for the caller (and a code, where one helps)."""

    status_code: Annotated[int, _doc("The HTTP status, repeated.", 400)]
    detail: Annotated[
        str, _doc("What went wrong and, where it helps, what to do.", 'expected a JSON object with "levels"')
    ]
    code: Annotated[
        str | None, _doc("A machine-readable reason, where the status alone is not enough.", "idempotency_key_reused")
    ] = None


def read_issues(files: JobFiles, kind: str, offset: int, limit: int) -> list[dict[str, Any]]:
    """A page of a job's errors or warnings (`kind`), in row order."""
    path = files.errors if kind == "errors" else files.warnings
    if not path.exists():
        return []
    return pl.scan_parquet(path).slice(offset, limit).collect().to_dicts()


def issues(items: list[dict[str, Any]]) -> list[RowIssue]:
    return [RowIssue(**item) for item in items]


def first_issues(files: JobFiles, kind: str) -> list[RowIssue]:
    """The first STATUS_ERROR_LIMIT errors or warnings (`kind`) of a job, for its status. A client polling a
    status reads them again and again, and a job's files never change but to be replaced whole: each
    version of a file is read once per process (_FIRST_ISSUES_KEPT of them are kept)."""
    path = files.errors if kind == "errors" else files.warnings
    try:
        found = path.stat()
    except FileNotFoundError:
        return []
    return list(_first_issues_of(str(path), found.st_ino, found.st_mtime_ns, found.st_size))


_FIRST_ISSUES_KEPT = 64


@functools.lru_cache(maxsize=_FIRST_ISSUES_KEPT)
def _first_issues_of(path: str, inode: int, modified: int, size: int) -> tuple[RowIssue, ...]:
    try:
        return tuple(issues(pl.scan_parquet(path).slice(0, STATUS_ERROR_LIMIT).collect().to_dicts()))
    except FileNotFoundError:  # replaced since it was looked at: the caller's next look finds the new one
        return ()


def status_view(record: JobRecord, settings: Settings) -> Any:
    files = JobFiles.of(settings.staging_dir, record.organization_id, record.job_id)
    if record.status == JobStatus.FAILED.value:
        errors = [RowIssue(**job_level_error(record.job_error or "import failed", record.job_error_code))]
    else:
        errors = first_issues(files, "errors")
    values = {wire: getattr(record, name) for name, wire in WIRE_FIELDS.items()}
    warnings = first_issues(files, "warnings")
    if record.is_open and record.waiting_reason:  # transient trouble: the job waits and is tried again
        warnings.insert(0, RowIssue(row=None, field=None, code="retrying", message=record.waiting_reason, value=None))
    return JobStatusView(**values, errors=errors, warnings=warnings)
