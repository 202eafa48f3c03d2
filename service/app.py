"""The Litestar API: six import endpoints that stage and enqueue, and the job status endpoints.

An import streams its body to disk (never whole in memory), stages it (service/staging.py), writes
the job's record and enqueues it, and only then answers 202: what was accepted is on disk. Whatever
goes wrong before that (a body over the limit, a full or unwritable disk, Redis away) is a clear 4xx or
503/507, and every file of the attempt is removed. API keys are never logged and never echoed back.

Bodies are JSON, NDJSON, CSV or Parquet (by Content-Type), gzip-compressed or not (Content-Encoding);
a job's failed rows come back in the format it was sent in (service/failed_rows.py).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import anyio
import duckdb
import redis
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.params import FromPath, Parameter
from litestar.response import Stream

from contracts.common import Contract, WireType
from service.auth import KeyStore, Principal, Scope
from service.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServiceUnavailableError,
    StockyardError,
    UnsupportedMediaError,
    storage_error,
)
from service.failed_rows import FILE_EXTENSIONS, json_prefix, write_failed_rows
from service.files import remove_quietly
from service.job import JobRecord, JobStatus, iso, job_level_error, utc_now
from service.job_files import JobFiles
from service.job_store import JobStore
from service.kinds import KINDS
from service.queue import Queues
from service.settings import Settings, get_settings
from service.staging import ACCEPTED_MEDIA_TYPES, BodyDecoder, UploadFormat, stage_body
from service.views import (
    MAX_OFFSET,
    ErrorBody,
    ImportAccepted,
    IssuePage,
    JobStatusView,
    RowIssue,
    issues,
    read_issues,
    status_view,
)


def _error_responses(*codes: int) -> dict[int, ResponseSpec]:
    descriptions = {
        400: "The request as a whole is unusable (not JSON, not an object, no array, ...)",
        401: "No API key, or an unknown or revoked one",
        403: "The API key lacks the scope this endpoint needs",
        404: "No such job (a job of another organization looks the same)",
        409: "The job has not completed (it is pending or processing, or it failed as a whole)",
        413: "The body, or once uncompressed, is larger than the configured limit",
        415: "The body is not JSON, NDJSON, CSV or Parquet, or its Content-Encoding is not gzip",
        503: "The service cannot take the request now (staging area not writable, queue unavailable); retry",
        507: "Not enough storage to stage the upload; nothing was kept, retry later",
    }
    return {
        code: ResponseSpec(data_container=ErrorBody, description=descriptions[code], generate_examples=False)
        for code in codes
    }


# --- plumbing -----------------------------------------------------------------------------------


UPLOAD_RETRY_AFTER_SECONDS = 5


@dataclass
class Services:
    settings: Settings
    keys: KeyStore
    jobs: JobStore
    queues: Queues
    uploads_in_progress: int = 0


def _services(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services


def _authenticate(request: Request[Any, Any, Any], scope: Scope) -> tuple[Services, Principal]:
    services = _services(request)
    principal = services.keys.authenticate(request.headers.get("x-api-key"))
    principal.require(scope)
    return services, principal


def _handle_error(request: Request[Any, Any, Any], error: StockyardError) -> Response[ErrorBody]:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    body = ErrorBody(status_code=error.status_code, detail=error.message)
    return Response(body, status_code=error.status_code, headers=headers)


def _status_url(job_id: str) -> str:
    return f"/api/import/status/{job_id}"


def _upload_format(request: Request[Any, Any, Any]) -> UploadFormat:
    """The format of the body, from its Content-Type (JSON when there is none)."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return UploadFormat.JSON
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in ACCEPTED_MEDIA_TYPES:
        return ACCEPTED_MEDIA_TYPES[media_type]
    if media_type.endswith("+json"):
        return UploadFormat.JSON
    accepted = ", ".join(ACCEPTED_MEDIA_TYPES)
    raise UnsupportedMediaError(f"unsupported content type {media_type!r}: send one of {accepted}")


def _is_gzip(request: Request[Any, Any, Any]) -> bool:
    """Is the body gzip-compressed (Content-Encoding: gzip)? Any other encoding is refused."""
    encodings = [e.strip().lower() for e in request.headers.get("content-encoding", "").split(",") if e.strip()]
    encodings = [e for e in encodings if e != "identity"]
    if not encodings:
        return False
    if encodings in (["gzip"], ["x-gzip"]):
        return True
    raise UnsupportedMediaError(f"unsupported content encoding {', '.join(encodings)!r}: send gzip, or no encoding")


_HANDOFF_BYTES = 1 << 20
"""Received bytes are decoded and written by a worker thread a megabyte at a time: inflating gzip (or
normalizing CSV line endings) never holds the event loop, and the thread hop costs little."""


def _decode_and_write(decoder: BodyDecoder, handle: BinaryIO, chunks: list[bytes], final: bool) -> None:
    for chunk in chunks:
        for piece in decoder.feed(chunk):
            handle.write(piece)
    if final:
        handle.write(decoder.finish())


async def _receive_body(
    request: Request[Any, Any, Any], path: Path, limit: int, decoder: BodyDecoder, idle_timeout: float
) -> None:
    """Stream the body to `path` through `decoder`, never more than `limit` bytes received nor written
    (413 as soon as either is exceeded, with or without a Content-Length); a body that sends nothing for
    `idle_timeout` seconds is a 408. When the disk refuses a write, the rest of the body is read and
    dropped, so that the client gets the 507/503 rather than a connection reset in the middle of its upload."""
    announced = request.headers.get("content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise PayloadTooLargeError(f"the body is larger than the limit of {limit} bytes")
    failure: OSError | None = None
    handle = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "wb")  # noqa: SIM115 (closed below, where a failed flush is caught too)
    except OSError as error:
        failure = error
    received = 0
    pending: list[bytes] = []
    pending_bytes = 0
    try:
        while True:
            try:
                with anyio.fail_after(idle_timeout):
                    message = await request.receive()
            except TimeoutError:
                raise RequestTimeoutError(f"no part of the body arrived for {idle_timeout:g} s") from None
            if message["type"] == "http.disconnect":
                raise BadRequestError("the client disconnected before the body was complete")
            chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
            received += len(chunk)
            if received > limit:
                raise PayloadTooLargeError(f"the body is larger than the limit of {limit} bytes")
            final = not message.get("more_body", False)
            if chunk:
                pending.append(chunk)
                pending_bytes += len(chunk)
            if failure is None and handle is not None and (final or pending_bytes >= _HANDOFF_BYTES):
                try:
                    await anyio.to_thread.run_sync(_decode_and_write, decoder, handle, pending, final)
                except OSError as error:
                    failure = error
            if final or pending_bytes >= _HANDOFF_BYTES:
                pending, pending_bytes = [], 0
            if final:
                break
    finally:
        if handle is not None:
            try:
                handle.close()
            except OSError as error:
                failure = failure or error
    if failure is not None:
        raise storage_error(failure) from None


async def _accept_import(request: Request[Any, Any, Any], contract: Contract) -> Response[ImportAccepted]:
    services, principal = _authenticate(request, Scope.IMPORT_WRITE)
    upload_format = _upload_format(request)
    settings = services.settings
    if services.uploads_in_progress >= settings.max_concurrent_uploads:
        raise ServiceUnavailableError(
            f"{services.uploads_in_progress} uploads are being received already; retry in a few seconds",
            retry_after=UPLOAD_RETRY_AFTER_SECONDS,
        )
    services.uploads_in_progress += 1
    try:
        return await _stage_and_accept(request, services, principal, contract, upload_format)
    finally:
        services.uploads_in_progress -= 1


async def _stage_and_accept(
    request: Request[Any, Any, Any],
    services: Services,
    principal: Principal,
    contract: Contract,
    upload_format: UploadFormat,
) -> Response[ImportAccepted]:
    settings = services.settings
    decoder = BodyDecoder(settings.max_body_bytes, gzip=_is_gzip(request), upload_format=upload_format)
    job_id = secrets.token_hex(16)  # 128 random bits: unguessable, never sequential
    files = JobFiles.of(settings.staging_dir, principal.organization_id, job_id)
    lines_path = files.lines if contract.has_lines else None
    try:
        await _receive_body(request, files.body, settings.max_body_bytes, decoder, settings.body_idle_timeout_seconds)
        staged = await anyio.to_thread.run_sync(stage_body, contract, files.body, files.rows, lines_path, upload_format)
        record = JobRecord(
            job_id=job_id,
            organization_id=principal.organization_id,
            kind=contract.kind,
            status=JobStatus.PENDING.value,
            row_count=staged.row_count,
            created_at=iso(utc_now()),
            upload_format=upload_format.value,
        )
        await anyio.to_thread.run_sync(services.jobs.accept, record)
        services.queues.enqueue_prepare(record)
    except OSError as error:  # the durable record could not be written
        _forget(services, files)
        raise storage_error(error) from None
    except redis.RedisError:
        _forget(services, files)
        raise ServiceUnavailableError("the job queue is unavailable; nothing was kept, retry later") from None
    except BaseException:
        _forget(services, files)
        raise
    finally:
        remove_quietly(files.body)
    accepted = ImportAccepted(
        job_id=job_id,
        type=contract.kind,
        status=record.status,
        row_count=record.row_count,
        created_at=record.created_at,
        status_url=_status_url(job_id),
    )
    return Response(accepted, status_code=202, headers={"Location": _status_url(job_id)})


def _forget(services: Services, files: JobFiles) -> None:
    """An upload that was not accepted after all: remove every file of it (and its index entry, if any)."""
    remove_quietly(*files.all())
    with contextlib.suppress(redis.RedisError):
        services.jobs.redis.delete(services.jobs.cache_key(files.job_id))


def _find_job(request: Request[Any, Any, Any], job_id: str) -> tuple[Services, JobRecord]:
    services, principal = _authenticate(request, Scope.IMPORT_READ)
    with contextlib.suppress(ValueError):
        JobFiles.of(services.settings.staging_dir, principal.organization_id, job_id)  # checks the id's shape
        return services, services.jobs.get(job_id, principal.organization_id)
    return services, services.jobs.get("invalid", principal.organization_id)


# --- OpenAPI: the bodies are streamed, so their schemas are declared from the contracts ----------------

_WIRE_SCHEMAS = {
    WireType.IDENTIFIER: Schema(one_of=[Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.NUMBER)]),
    WireType.TEXT: Schema(type=OpenAPIType.STRING),
    WireType.LABEL: Schema(type=OpenAPIType.STRING),
    WireType.NUMBER: Schema(
        one_of=[Schema(type=OpenAPIType.NUMBER), Schema(type=OpenAPIType.STRING, description="a numeric string")]
    ),
    WireType.DATE: Schema(type=OpenAPIType.STRING, format="date"),  # type: ignore[arg-type]
}


def _row_schema(contract: Contract, *, lines: bool = False) -> Schema:
    fields = contract.line_fields if lines else contract.fields
    model = contract.line_schema if lines else contract.schema
    assert model is not None
    columns = model.to_schema().columns
    properties: dict[str, Any] = {f.name: _WIRE_SCHEMAS[f.type] for f in fields}
    required = [f.name for f in fields if not columns[f.name].nullable]
    if contract.has_lines and not lines:
        properties["lines"] = Schema(type=OpenAPIType.ARRAY, items=_row_schema(contract, lines=True))
        required.append("lines")
    return Schema(type=OpenAPIType.OBJECT, properties=properties, required=required)


def _csv_description(contract: Contract) -> str:
    names = ", ".join(f.name for f in (*contract.fields, *contract.line_fields))
    text = f"A header line naming the fields ({names}), then one record per row; an empty cell is a missing value."
    if contract.has_lines:
        key = contract.key[0]
        text += f" One record per line, the header fields repeated: records with the same {key} make one row."
    return text


def _body_operation(contract: Contract) -> type[Operation]:
    row = _row_schema(contract)
    body = Schema(
        type=OpenAPIType.OBJECT,
        properties={contract.array_key: Schema(type=OpenAPIType.ARRAY, items=row)},
        required=[contract.array_key],
    )
    lines = " (`lines` a list of structs, or flat: one file row per line, as in CSV)" if contract.has_lines else ""
    content = {
        "application/json": OpenAPIMediaType(schema=body),
        "application/x-ndjson": OpenAPIMediaType(
            schema=Schema(type=OpenAPIType.STRING, description="One row per line: a JSON object as in the array.")
        ),
        "text/csv": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, description=_csv_description(contract))),
        "application/vnd.apache.parquet": OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.STRING,
                format="binary",  # type: ignore[arg-type]
                description=f"A Parquet file with a column per field{lines}.",
            )
        ),
    }

    @dataclass
    class ImportOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                content=content,
                required=True,
                description=(
                    f'A JSON object whose "{contract.array_key}" array holds the rows; or the rows as NDJSON, CSV'
                    " or Parquet. Any of them may be gzip-compressed (Content-Encoding: gzip)."
                ),
            )

    return ImportOperation


def _import_handler(contract: Contract) -> HTTPRouteHandler:
    async def handler(request: Request[Any, Any, Any]) -> Response[ImportAccepted]:
        return await _accept_import(request, contract)

    handler.__name__ = f"import_{contract.kind.replace('-', '_')}"
    return post(
        f"/api/import/{contract.kind}",
        status_code=202,
        summary=f"Import {contract.kind}",
        description=f"Stage the rows of `{contract.array_key}` and queue them; answers 202 with the job.",
        operation_class=_body_operation(contract),
        tags=["imports"],
        response_headers=[ResponseHeader(name="Location", description="The job's status URL", documentation_only=True)],
        responses=_error_responses(400, 401, 403, 413, 415, 503, 507),
    )(handler)


_STATUS_ERRORS = _error_responses(401, 403, 404, 503)


@get("/api/import/status/{job_id:str}", tags=["jobs"], summary="Job status", responses=_STATUS_ERRORS)
async def job_status(request: Request[Any, Any, Any], job_id: FromPath[str]) -> JobStatusView:  # type: ignore[valid-type]
    """The job with its counts, the first 1,000 errors and warnings in row order."""
    services, record = _find_job(request, job_id)
    return await anyio.to_thread.run_sync(status_view, record, services.settings)


async def _issue_page(request: Request[Any, Any, Any], job_id: str, kind: str, offset: int, limit: int) -> IssuePage:
    services, record = _find_job(request, job_id)
    total = record.error_count if kind == "errors" else record.warning_count
    if kind == "errors" and record.status == JobStatus.FAILED.value:
        items = [RowIssue(**job_level_error(record.job_error or "import failed"))][offset : offset + limit]
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
    responses=_error_responses(400, 401, 403, 404, 409, 503),
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
    services, record = _find_job(request, job_id)
    if record.status == JobStatus.FAILED.value:
        reason = record.job_error or "import failed"
        raise ConflictError(f"the job failed as a whole ({reason}): nothing of it was applied, send it all again")
    if record.status != JobStatus.COMPLETED.value:
        raise ConflictError(f"the job is {record.status}: its failed rows are known once it has COMPLETED")
    upload_format = format or UploadFormat(record.upload_format)
    contract = KINDS[record.kind].contract
    files = JobFiles.of(services.settings.staging_dir, record.organization_id, record.job_id)
    needed = [files.rows] + ([files.lines] if contract.has_lines else [])
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


def create_app(settings: Settings | None = None, connection: redis.Redis | None = None) -> Litestar:
    settings = settings or get_settings()
    settings.staging_dir.mkdir(parents=True, exist_ok=True)
    connection = connection or redis.Redis.from_url(settings.effective_redis_url)
    services = Services(
        settings=settings,
        keys=KeyStore(settings.keys_path),
        jobs=JobStore(connection, settings),
        queues=Queues(connection, settings),
    )
    openapi = OpenAPIConfig(
        title="Stockyard import API",
        version="1.0.0",
        description="Bulk imports of inventory data. Every import answers 202 with a job; poll its status.",
        components=Components(
            security_schemes={
                "apiKey": SecurityScheme(type="apiKey", name="x-api-key", security_scheme_in="header"),
            }
        ),
        security=[{"apiKey": []}],
    )
    app = Litestar(
        route_handlers=[
            *(_import_handler(kind.contract) for kind in KINDS.values()),
            job_status,
            job_errors,
            job_warnings,
            job_failed_rows,
        ],
        exception_handlers={StockyardError: _handle_error},
        openapi_config=openapi,
        request_max_body_size=settings.max_body_bytes,
    )
    app.state.services = services
    return app
