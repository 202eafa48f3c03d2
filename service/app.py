"""The Litestar app: the import endpoints (service/imports_api.py), the job endpoints (service/jobs_api.py),
and the OpenAPI document. API keys are never logged and never echoed back.
"""

from __future__ import annotations

import redis
from litestar import Litestar

from service.api_context import Services, handle_error
from service.auth import KeyStore
from service.errors import (
    StockyardError,
)
from service.imports_api import import_routes
from service.job_store import JobStore
from service.jobs_api import JOB_ROUTES
from service.jobs_page import jobs_page_router
from service.logs import log_request_error
from service.openapi import assets_router, openapi_config
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
    app = Litestar(
        route_handlers=[
            *import_routes(),
            *JOB_ROUTES,
            *WEBHOOK_ROUTES,
            *OPS_ROUTES,
            assets_router(),
            jobs_page_router(),
        ],
        exception_handlers={StockyardError: handle_error},
        after_exception=[log_request_error],
        logging_config=None,  # service.logs sets up every logger
        openapi_config=openapi_config(),
        request_max_body_size=settings.max_body_bytes,
    )
    app.state.services = services
    return app
