"""The webhook endpoints of the API: an organization registers, lists and removes the URLs Stockyard
notifies when its jobs end, and reads every delivery attempt (service/webhooks.py does the sending)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import msgspec
from litestar import Request, delete, get, post
from litestar.params import FromPath, JSONBody, Parameter, QueryParameter

from service.api_context import authenticate, error_responses
from service.auth import Scope
from service.errors import BadRequestError
from service.job_files import JOB_ID_PATTERN
from service.webhooks import Attempt, Endpoint, WebhookStore


class NewEndpoint(msgspec.Struct):
    """`POST /api/webhooks`: the URL to notify (http or https, a public address)."""

    url: str


class EndpointList(msgspec.Struct):
    items: list[Endpoint]


class AttemptList(msgspec.Struct):
    items: list[Attempt]


def _store(request: Request[Any, Any, Any], scope: Scope) -> tuple[WebhookStore, str]:
    services, principal = authenticate(request, scope)
    return WebhookStore(services.settings), principal.organization_id


@post(
    "/api/webhooks",
    status_code=201,
    tags=["webhooks"],
    summary="Register a webhook endpoint",
    responses=error_responses(400, 401, 403),
)
async def add_endpoint(request: Request[Any, Any, Any], data: JSONBody[NewEndpoint]) -> Endpoint:
    """The answer holds the endpoint's signing secret: the only time it is shown. Every job of the
    organization that ends (COMPLETED or FAILED) is POSTed there as its status, signed per Standard
    Webhooks (webhook-id, webhook-timestamp, webhook-signature)."""
    store, organization_id = _store(request, Scope.IMPORT_WRITE)
    return await anyio.to_thread.run_sync(store.add, organization_id, data.url)


@get(
    "/api/webhooks",
    tags=["webhooks"],
    summary="The organization's webhook endpoints",
    responses=error_responses(401, 403),
)
async def list_endpoints(request: Request[Any, Any, Any]) -> EndpointList:
    store, organization_id = _store(request, Scope.IMPORT_WRITE)
    endpoints = await anyio.to_thread.run_sync(store.endpoints, organization_id)
    return EndpointList(items=[endpoint for _, endpoint in endpoints])


@delete(
    "/api/webhooks/{endpoint_id:str}",
    status_code=204,
    tags=["webhooks"],
    summary="Remove a webhook endpoint",
    responses=error_responses(401, 403, 404),
)
async def remove_endpoint(request: Request[Any, Any, Any], endpoint_id: FromPath[str]) -> None:
    """Deliveries not yet made to it are dropped."""
    store, organization_id = _store(request, Scope.IMPORT_WRITE)
    await anyio.to_thread.run_sync(store.remove, endpoint_id, organization_id)


@get(
    "/api/webhooks/deliveries",
    tags=["webhooks"],
    summary="Every webhook delivery attempt, newest first",
    responses=error_responses(400, 401, 403),
)
async def list_deliveries(
    request: Request[Any, Any, Any],
    job_id: Annotated[str | None, QueryParameter(name="jobId", description="Only the deliveries of this job")] = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
) -> AttemptList:
    """Each attempt: when, what the receiver answered (or the error), how long it took, and whether the
    delivery is done, given up (after a day), or to be tried again."""
    store, organization_id = _store(request, Scope.IMPORT_READ)
    if job_id is not None and not JOB_ID_PATTERN.match(job_id):
        raise BadRequestError("jobId is not a job id")
    return AttemptList(items=await anyio.to_thread.run_sync(store.attempts, organization_id, job_id, limit))


WEBHOOK_ROUTES = [add_endpoint, list_endpoints, remove_endpoint, list_deliveries]
