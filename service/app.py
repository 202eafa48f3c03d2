"""The Litestar app: the import endpoints (service/imports_api.py), the job endpoints (service/jobs_api.py),
and the OpenAPI document. API keys are never logged and never echoed back.
"""

from __future__ import annotations

import redis
from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import (
    Components,
    SecurityScheme,
)

from service.api_context import Services, handle_error
from service.auth import KeyStore
from service.errors import (
    StockyardError,
)
from service.imports_api import import_routes
from service.job_store import JobStore
from service.jobs_api import JOB_ROUTES
from service.ops_api import OPS_ROUTES
from service.queue import Queues
from service.settings import Settings, get_settings
from service.webhooks_api import WEBHOOK_ROUTES


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
            *import_routes(),
            *JOB_ROUTES,
            *WEBHOOK_ROUTES,
            *OPS_ROUTES,
        ],
        exception_handlers={StockyardError: handle_error},
        openapi_config=openapi,
        request_max_body_size=settings.max_body_bytes,
    )
    app.state.services = services
    return app
