"""The six import endpoints: stream the body to disk, stage it, record and queue the job, then answer 202.

An import streams its body to disk (never whole in memory), stages it (service/staging/), writes the
job's record and queues it, and only then answers 202: what was accepted is on disk. Whatever goes wrong
before that (a body over the limit, a full or unwritable disk, Redis away) is a clear 4xx or 503/507, and
every file of the attempt is removed. Bodies are JSON, NDJSON, CSV or Parquet (by Content-Type),
gzip-compressed or not (Content-Encoding). Their OpenAPI schemas are declared in service/openapi.py.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import anyio
import redis
from litestar import Request, Response, post
from litestar.datastructures import ResponseHeader
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    Operation,
)
from litestar.params import QueryParameter

from contracts.common import Contract
from service import logs, metrics
from service.api_context import Services, authenticate, error_responses, status_url
from service.auth import Principal, Scope
from service.errors import (
    BadRequestError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServiceUnavailableError,
    UnsupportedMediaError,
    storage_error,
)
from service.files import remove_quietly
from service.idempotency import HEADER as IDEMPOTENCY_HEADER
from service.idempotency import Idempotency
from service.job import JobRecord, JobStatus, iso, utc_now
from service.job_files import JobFiles
from service.kinds import KINDS
from service.openapi import request_body
from service.staging import ACCEPTED_MEDIA_TYPES, BodyDecoder, UploadFormat, stage_body
from service.views import (
    ImportAccepted,
)

logger = logging.getLogger("stockyard.imports")

UPLOAD_RETRY_AFTER_SECONDS = 5
"""The Retry-After of an upload refused because the API receives too many at once."""


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


def _decode_and_write(
    decoder: BodyDecoder, handle: BinaryIO, chunks: list[bytes], final: bool, digest: Any | None
) -> None:
    for chunk in chunks:
        if digest is not None:
            digest.update(chunk)
        for piece in decoder.feed(chunk):
            handle.write(piece)
    if final:
        handle.write(decoder.finish())


async def _receive_body(
    request: Request[Any, Any, Any],
    path: Path,
    limit: int,
    decoder: BodyDecoder,
    idle_timeout: float,
    digest: Any | None = None,
) -> int:
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
                    await anyio.to_thread.run_sync(_decode_and_write, decoder, handle, pending, final, digest)
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
    return received


async def _accept_import(
    request: Request[Any, Any, Any], contract: Contract, dry_run: bool = False
) -> Response[ImportAccepted]:
    services, principal = authenticate(request, Scope.IMPORT_WRITE)
    upload_format = _upload_format(request)
    settings = services.settings
    if services.uploads_in_progress >= settings.max_concurrent_uploads:
        raise ServiceUnavailableError(
            f"{services.uploads_in_progress} uploads are being received already; retry in a few seconds",
            retry_after=UPLOAD_RETRY_AFTER_SECONDS,
        )
    services.uploads_in_progress += 1
    try:
        return await _stage_and_accept(request, services, principal, contract, upload_format, dry_run)
    finally:
        services.uploads_in_progress -= 1


async def _stage_and_accept(
    request: Request[Any, Any, Any],
    services: Services,
    principal: Principal,
    contract: Contract,
    upload_format: UploadFormat,
    dry_run: bool,
) -> Response[ImportAccepted]:
    settings = services.settings
    gzip = _is_gzip(request)
    decoder = BodyDecoder(settings.max_body_bytes, gzip=gzip, upload_format=upload_format)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    digest = hashlib.sha256() if key is not None else None
    job_id = secrets.token_hex(16)  # 128 random bits: unguessable, never sequential
    files = JobFiles.of(settings.staging_dir, principal.organization_id, job_id)
    lines_path = files.lines if contract.has_lines else None
    try:
        idle = settings.body_idle_timeout_seconds
        received = await _receive_body(request, files.body, settings.max_body_bytes, decoder, idle, digest)
        parts = (contract.kind, upload_format.value, "gzip" if gzip else "", "dry-run" if dry_run else "")
        idempotency = Idempotency.of(key, *parts, body_sha256=digest.hexdigest() if digest else "")
        if idempotency is not None:  # sent before: answered at once, nothing staged
            earlier = idempotency.recorded_job(settings.staging_dir, principal.organization_id)
            if earlier is not None:
                _forget(services, files)
                return _replayed(services.jobs.get(earlier, principal.organization_id))
        stage = functools.partial(stage_body, kept_path=files.upload, keep_from_rows=settings.group_max_rows)
        staged = await anyio.to_thread.run_sync(stage, contract, files.body, files.rows, lines_path, upload_format)
        record = JobRecord(
            job_id=job_id,
            organization_id=principal.organization_id,
            kind=contract.kind,
            status=JobStatus.PENDING.value,
            row_count=staged.row_count,
            created_at=iso(utc_now()),
            upload_format=upload_format.value,
            dry_run=dry_run,
            unknown_fields=[field.to_record() for field in staged.unknown_fields],
        )
        accepted_record = await anyio.to_thread.run_sync(services.jobs.accept, record, idempotency)
        if accepted_record.job_id != job_id:  # the same request raced in first: its job is the answer
            _forget(services, files)
            return _replayed(accepted_record)
        with services.jobs.redis.pipeline(transaction=False) as pipe:  # one round trip, on the event loop
            services.queues.enqueue_prepare(record, pipeline=pipe)
            metrics.count(pipe, "stockyard_jobs_accepted", contract.kind)
            metrics.count(pipe, "stockyard_bytes_received", contract.kind, by=float(received))
            pipe.execute()
        logs.job_stage(
            logger, "accepted", record, "queued", failed_rows=None, bytes=received, format=upload_format.value
        )
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
    return Response(_envelope(record), status_code=202, headers={"Location": status_url(job_id)})


def _envelope(record: JobRecord) -> ImportAccepted:
    return ImportAccepted(
        job_id=record.job_id,
        type=record.kind,
        status=JobStatus(record.status),
        row_count=record.row_count,
        created_at=record.created_at,
        status_url=status_url(record.job_id),
    )


def _replayed(record: JobRecord) -> Response[ImportAccepted]:
    """The answer to a request sent again with its Idempotency-Key: its job, as it is now."""
    headers = {"Location": status_url(record.job_id), "Idempotent-Replayed": "true"}
    return Response(_envelope(record), status_code=202, headers=headers)


def _forget(services: Services, files: JobFiles) -> None:
    """An upload that was not accepted after all: remove every file of it (and its index entry, if any)."""
    remove_quietly(*files.all())
    with contextlib.suppress(redis.RedisError):
        services.jobs.redis.delete(services.jobs.cache_key(files.job_id))


def _body_operation(contract: Contract) -> type[Operation]:
    """The operation of a kind's endpoint, with its request body declared (service/openapi.py)."""
    body = request_body(contract)

    @dataclass
    class ImportOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = body

    return ImportOperation


def import_handler(contract: Contract) -> HTTPRouteHandler:
    async def handler(
        request: Request[Any, Any, Any],
        dry_run: Annotated[
            bool,
            QueryParameter(
                name="dryRun",
                description="Validate and transform the whole body as a real import, count what it would"
                " insert, update and leave unchanged, and write nothing to the warehouse.",
            ),
        ] = False,
    ) -> Response[ImportAccepted]:
        return await _accept_import(request, contract, dry_run)

    handler.__name__ = f"import_{contract.kind.replace('-', '_')}"
    return post(
        f"/api/import/{contract.kind}",
        status_code=202,
        summary=f"Import {contract.kind}",
        description=f"Stage the rows of `{contract.array_key}` and queue them; answers 202 with the job.",
        operation_class=_body_operation(contract),
        tags=["imports"],
        response_headers=[ResponseHeader(name="Location", description="The job's status URL", documentation_only=True)],
        responses=error_responses(400, 401, 403, 408, 413, 415, 422, 503, 507),
    )(handler)


def import_routes() -> list[HTTPRouteHandler]:
    return [import_handler(kind.contract) for kind in KINDS.values()]
