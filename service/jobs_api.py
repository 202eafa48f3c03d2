"""The job endpoints: a job's status, its errors and warnings paged, and its failed rows ready to fix."""

from __future__ import annotations

import base64
import functools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
import duckdb
from litestar import Request, get, post
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Schema,
)
from litestar.params import FromPath, Parameter, QueryParameter
from litestar.response import Stream

from service.api_context import authenticate, error_responses, find_job
from service.auth import Scope
from service.cancel import cancel_job
from service.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    storage_error,
)
from service.failed_rows import FILE_EXTENSIONS, json_prefix, write_failed_rows
from service.files import remove_quietly
from service.job import JobStatus, job_level_error
from service.job_files import JobFiles
from service.kinds import KINDS
from service.staging import UploadFormat
from service.views import (
    MAX_OFFSET,
    MAX_PAGE,
    IssuePage,
    JobList,
    JobStatusView,
    RowIssue,
    issues,
    read_issues,
    status_view,
    summary_view,
)

_STATUS_ERRORS = error_responses(401, 403, 404, 503)


@get("/api/import/status/{job_id:str}", tags=["jobs"], summary="Job status", responses=_STATUS_ERRORS)
async def job_status(request: Request[Any, Any, Any], job_id: FromPath[str]) -> JobStatusView:  # type: ignore[valid-type]
    """The job with its counts, the first 1,000 errors and warnings in row order."""
    services, record = find_job(request, job_id)
    return await anyio.to_thread.run_sync(status_view, record, services.settings)


async def _issue_page(request: Request[Any, Any, Any], job_id: str, kind: str, offset: int, limit: int) -> IssuePage:
    services, record = find_job(request, job_id)
    total = record.error_count if kind == "errors" else record.warning_count
    if kind == "errors" and record.status == JobStatus.FAILED.value:
        items = [RowIssue(**job_level_error(record.job_error or "import failed", record.job_error_code))][
            offset : offset + limit
        ]
        return IssuePage(job_id=job_id, offset=offset, limit=limit, total=1, items=items)
    files = JobFiles.of(services.settings.staging_dir, record.organization_id, record.job_id)
    page = await anyio.to_thread.run_sync(read_issues, files, kind, offset, limit)
    return IssuePage(job_id=job_id, offset=offset, limit=limit, total=total, items=issues(page))


@get(
    "/api/import/status/{job_id:str}/errors",
    tags=["jobs"],
    summary="All errors of a job, paged",
    responses=_STATUS_ERRORS,
)
async def job_errors(
    request: Request[Any, Any, Any],
    job_id: FromPath[str],
    offset: int = Parameter(default=0, ge=0, le=MAX_OFFSET),
    limit: int = Parameter(default=1000, ge=1, le=10_000),
) -> IssuePage:
    """Every error of the job in row order; `total` says how many there are."""
    return await _issue_page(request, job_id, "errors", offset, limit)


@get(
    "/api/import/status/{job_id:str}/warnings",
    tags=["jobs"],
    summary="All warnings of a job, paged",
    responses=_STATUS_ERRORS,
)
async def job_warnings(
    request: Request[Any, Any, Any],
    job_id: FromPath[str],
    offset: int = Parameter(default=0, ge=0, le=MAX_OFFSET),
    limit: int = Parameter(default=1000, ge=1, le=10_000),
) -> IssuePage:
    """Every warning (superseded duplicates) of the job in row order."""
    return await _issue_page(request, job_id, "warnings", offset, limit)


@dataclass
class _FailedRowsOperation(Operation):
    def __post_init__(self) -> None:
        if self.responses is not None:
            self.responses["200"] = OpenAPIResponse(
                description="The failed rows, in input order, with `_row` and `_errors` added (see the README)",
                content={
                    upload_format.media_type: OpenAPIMediaType(
                        schema=Schema(
                            type=OpenAPIType.OBJECT if upload_format is UploadFormat.JSON else OpenAPIType.STRING
                        )
                    )
                    for upload_format in UploadFormat
                },
            )


_READ_STEP = 1 << 20


@get(
    "/api/import/status/{job_id:str}/failed-rows",
    tags=["jobs"],
    summary="The failed rows of a job, ready to fix and send again",
    responses=error_responses(400, 401, 403, 404, 409, 503),
    operation_class=_FailedRowsOperation,
)
async def job_failed_rows(
    request: Request[Any, Any, Any],
    job_id: FromPath[str],
    format: Annotated[  # named as the query parameter is: messages about it say "format"
        UploadFormat | None, Parameter(description="json, ndjson, csv or parquet; by default the format sent")
    ] = None,
) -> Stream:
    """Every rejected row as it was sent, in input order, with its row index and error messages added:
    fix them and POST the file back (the added columns are ignored). Streamed, never built in memory."""
    services, record = find_job(request, job_id)
    if record.status == JobStatus.FAILED.value:
        reason = record.job_error or "import failed"
        raise ConflictError(f"the job failed as a whole ({reason}): nothing of it was applied, send it all again")
    if record.status != JobStatus.COMPLETED.value:
        raise ConflictError(f"the job is {record.status}: its failed rows are known once it has COMPLETED")
    upload_format = format or UploadFormat(record.upload_format)
    contract = KINDS[record.kind].contract
    files = JobFiles.of(services.settings.staging_dir, record.organization_id, record.job_id)
    rows, lines = files.rows_as_sent()
    needed = [rows] + ([lines] if contract.has_lines else [])
    if not all(path.exists() for path in needed):
        raise NotFoundError(f"the rows of job {job_id} are no longer kept", job_id=job_id)
    extension = FILE_EXTENSIONS[upload_format]
    target = files.rows.with_name(f"{record.job_id}.failed-{secrets.token_hex(4)}{extension}.tmp")
    try:
        suffix = await anyio.to_thread.run_sync(write_failed_rows, contract, files, upload_format, target)
        handle = open(target, "rb")  # noqa: SIM115 (closed by the stream below)
    except (OSError, duckdb.IOException) as error:
        raise ServiceUnavailableError(
            "the failed rows could not be written to the staging area (full, or not writable); retry later",
            status_code=storage_error(error).status_code,
        ) from None
    finally:
        remove_quietly(target)  # the open handle still reads it; nothing is left behind, whatever happens
    prefix = json_prefix(contract) if upload_format is UploadFormat.JSON else b""

    def content() -> Iterator[bytes]:
        with handle:
            yield prefix
            while chunk := handle.read(_READ_STEP):
                yield chunk
            yield suffix

    filename = f"{record.kind}-{record.job_id}.failed{extension}"
    return Stream(
        content(),
        media_type=upload_format.media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _cursor(sequence: int | None) -> str | None:
    return None if sequence is None else base64.urlsafe_b64encode(f"after:{sequence}".encode()).decode()


def _after(cursor: str | None) -> int | None:
    """The sequence a cursor continues after; a 400 for anything that is not a cursor of ours."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)).decode()
        label, _, sequence = text.partition(":")
        if label != "after" or not sequence.isdigit():
            raise ValueError(text)
        return int(sequence)
    except ValueError:
        raise BadRequestError(
            "cursor is not one this API gave: pass nextCursor from the previous page as it is"
        ) from None


def _naive_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).replace(tzinfo=None)


@get(
    "/api/import/jobs",
    tags=["jobs"],
    summary="The organization's jobs, newest first",
    responses=error_responses(400, 401, 403, 503),
)
async def list_jobs(
    request: Request[Any, Any, Any],
    kind: Annotated[
        str | None, QueryParameter(name="type", description="Only jobs of this kind (catalog, inventory, ...)")
    ] = None,
    status: Annotated[JobStatus | None, Parameter(description="Only jobs in this status")] = None,
    created_since: Annotated[
        datetime | None, QueryParameter(name="createdSince", description="Only jobs accepted at or after this ISO time")
    ] = None,
    created_before: Annotated[
        datetime | None, QueryParameter(name="createdBefore", description="Only jobs accepted before this ISO time")
    ] = None,
    limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE, description="Jobs per page")] = 50,
    cursor: Annotated[str | None, Parameter(description="nextCursor of the previous page")] = None,
) -> JobList:
    """Newest first; each item is the job's status without its errors and warnings. The pages stay the
    same while new jobs arrive: a new job only ever shows on a first page."""
    services, principal = authenticate(request, Scope.IMPORT_READ)
    if kind is not None and kind not in KINDS:
        raise BadRequestError(f"unknown type {kind!r}: one of {', '.join(KINDS)}")
    after = _after(cursor)
    records, last = await anyio.to_thread.run_sync(
        functools.partial(
            services.jobs.list_jobs,
            principal.organization_id,
            kind=kind,
            status=status.value if status is not None else None,
            since=_naive_utc(created_since),
            before=_naive_utc(created_before),
            after=after,
            limit=limit,
        )
    )
    return JobList(items=[summary_view(record) for record in records], next_cursor=_cursor(last))


@post(
    "/api/import/status/{job_id:str}/cancel",
    status_code=200,
    tags=["jobs"],
    summary="Cancel a job that is not applied yet",
    responses=error_responses(401, 403, 404, 409, 503),
)
async def cancel(request: Request[Any, Any, Any], job_id: FromPath[str]) -> JobStatusView:  # type: ignore[valid-type]
    """A PENDING job, or a PROCESSING one not yet committed, ends FAILED with one error of code
    `cancelled`, nothing of it applied; the organization's later jobs go on in order. 409 once it has
    ended (COMPLETED or FAILED)."""
    services, record = find_job(request, job_id, Scope.IMPORT_WRITE)
    cancelled = await anyio.to_thread.run_sync(
        cancel_job, services.jobs, services.queues, record.organization_id, record.job_id
    )
    return await anyio.to_thread.run_sync(status_view, cancelled, services.settings)


JOB_ROUTES = [list_jobs, job_status, job_errors, job_warnings, job_failed_rows, cancel]
