"""What every route needs: the services of the app, the caller behind the key, errors in HTTP form."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response
from litestar.openapi import ResponseSpec

from service.auth import KeyStore, Principal, Scope
from service.errors import (
    GoneError,
    NotFoundError,
    StockyardError,
)
from service.job import JobRecord
from service.job_files import JobFiles
from service.job_store import JobStore
from service.queue import Queues
from service.retention import expired_at
from service.settings import Settings
from service.views import (
    ErrorBody,
)


@dataclass
class Services:
    settings: Settings
    keys: KeyStore
    jobs: JobStore
    queues: Queues
    uploads_in_progress: int = 0


def services_of(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services


def authenticate(request: Request[Any, Any, Any], scope: Scope) -> tuple[Services, Principal]:
    services = services_of(request)
    principal = services.keys.authenticate(request.headers.get("x-api-key"))
    principal.require(scope)
    return services, principal


def handle_error(request: Request[Any, Any, Any], error: StockyardError) -> Response[ErrorBody]:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    body = ErrorBody(status_code=error.status_code, detail=error.message, code=error.code)
    return Response(body, status_code=error.status_code, headers=headers)


def status_url(job_id: str) -> str:
    return f"/api/import/status/{job_id}"


def find_job(
    request: Request[Any, Any, Any], job_id: str, scope: Scope = Scope.IMPORT_READ
) -> tuple[Services, JobRecord]:
    """The caller's job (404 when it is missing or another organization's: the two look the same)."""
    services, principal = authenticate(request, scope)
    with contextlib.suppress(ValueError):
        JobFiles.of(services.settings.staging_dir, principal.organization_id, job_id)  # checks the id's shape
        try:
            return services, services.jobs.get(job_id, principal.organization_id)
        except NotFoundError:
            expired = expired_at(services.settings.staging_dir, principal.organization_id, job_id)
            if expired is None:
                raise
            days = services.settings.retention_days
            raise GoneError(f"job {job_id} expired on {expired}: finished jobs are kept {days:g} days") from None
    shown = job_id if len(job_id) <= 64 else f"{job_id[:64]}…"
    raise NotFoundError(f"no job {shown!r}: a job id is the 32 hexadecimal characters of the jobId an import answered")


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    descriptions = {
        400: "The request as a whole is unusable (not JSON, not an object, no array, ...)",
        401: "No API key, or an unknown or revoked one",
        403: "The API key lacks the scope this endpoint needs",
        404: "No such job (a job of another organization looks the same)",
        408: "The body stopped arriving (nothing for STOCKYARD_BODY_IDLE_TIMEOUT seconds)",
        409: "The job is not in a state that allows this (not completed yet, or ended already)",
        410: "The job ended longer ago than the retention period: its files are gone",
        422: "The Idempotency-Key was used before with a different request (code idempotency_key_reused)",
        413: "The body, or once uncompressed, is larger than the configured limit",
        415: "The body is not JSON, NDJSON, CSV or Parquet, or its Content-Encoding is not gzip",
        503: "The service cannot take the request now (staging area not writable, queue unavailable); retry",
        507: "Not enough storage to stage the upload; nothing was kept, retry later",
    }
    return {
        code: ResponseSpec(data_container=ErrorBody, description=descriptions[code], generate_examples=False)
        for code in codes
    }
