"""What a load balancer and Prometheus ask: is the process alive, can the service take work, and its metrics.

`GET /health` answers 200 while the process runs. `GET /ready` checks every part a job needs: Redis
answers, the staging area takes a file, a worker's heartbeat is recent, an applier holds the
warehouse, and (for a lake) its catalog's PostgreSQL answers; 503 naming the parts that fail.
`GET /metrics` is Prometheus' text format, counted across every process (service/metrics.py). None
needs a key: they say nothing about any organization's data.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import msgspec
import redis
import rq
from litestar import Request, Response, get
from litestar.openapi import ResponseSpec
from prometheus_client import generate_latest

from service import metrics
from service.api_context import services_of
from service.applier import APPLIER_HEARTBEAT
from service.job_store import OPEN_JOBS


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    """`ready`, or `unavailable`."""
    checks: dict[str, str]
    """Each part: `ok`, or what is wrong with it."""


@get("/health", tags=["operations"], summary="The process is alive", sync_to_thread=False)
def health() -> Health:
    return Health(status="ok")


def _checks(request: Request[Any, Any, Any]) -> dict[str, str]:
    services = services_of(request)
    connection = services.jobs.redis
    found: dict[str, str] = {}
    try:
        connection.ping()
        found["redis"] = "ok"
    except redis.RedisError as error:
        found["redis"] = f"unreachable: {error}"
    probe = services.settings.staging_dir / f".ready-{os.getpid()}"
    try:
        services.settings.staging_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
        found["staging"] = "ok"
    except OSError as error:
        found["staging"] = f"not writable: {error.strerror}"
    if services.settings.is_lake:
        from service.lake import catalog_problem

        problem = catalog_problem(services.settings.effective_lake_catalog)
        found["catalog"] = "ok" if problem is None else f"unreachable: {problem}"
    if found["redis"] != "ok":
        found["workers"] = found["applier"] = "unknown: Redis is unreachable"
        return found
    try:
        workers = rq.Worker.count(connection=connection)
        found["workers"] = "ok" if workers else "no worker has a recent heartbeat: start `stockyard worker`"
        holder = connection.get(APPLIER_HEARTBEAT)
        found["applier"] = (
            "ok" if holder else "no worker holds the warehouse (a worker with STOCKYARD_APPLY=auto takes it)"
        )
    except redis.RedisError as error:
        found["workers"] = found["applier"] = f"unknown: {error}"
    return found


@get(
    "/ready",
    tags=["operations"],
    summary="The service can take and finish work",
    responses={503: ResponseSpec(data_container=Readiness, description="A part the service needs fails (named)")},
)
async def ready(request: Request[Any, Any, Any]) -> Response[Readiness]:
    """200 when every part answers; 503 naming those that do not."""
    checks = await anyio.to_thread.run_sync(_checks, request)
    fine = all(value == "ok" for value in checks.values())
    return Response(
        Readiness(status="ready" if fine else "unavailable", checks=checks), status_code=200 if fine else 503
    )


@get("/metrics", tags=["operations"], summary="Metrics in Prometheus' text format", media_type="text/plain")
async def metrics_page(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = services_of(request)
    queues = [services.queues.prepare, services.queues.prepare_large, services.queues.apply]
    found = metrics.registry(services.jobs.redis, queues, OPEN_JOBS)
    text = await anyio.to_thread.run_sync(generate_latest, found)
    return Response(text, media_type="text/plain; version=0.0.4")


OPS_ROUTES = [health, ready, metrics_page]
