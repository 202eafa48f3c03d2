"""Running the API under uvicorn so that no client can exhaust it: header timeouts, descriptor limits, bounded logs.

- A connection must send a whole request head within STOCKYARD_HEADER_TIMEOUT seconds of opening (or of
  its last response): connections that never finish their headers are closed, however slowly they
  trickle bytes. uvicorn's own keep-alive timer restarts on every byte, so it does not do this.
- The process's soft limit of open files is raised to its hard limit, and uvicorn answers 503 beyond a
  number of connections well below it: descriptors never run out for the files a job needs.
- Repeated asyncio errors (an accept that failed for want of descriptors, say) are logged once per
  interval with a count, not once per event.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service import logs
from service.settings import Settings

logger = logging.getLogger("stockyard.api")

DESCRIPTORS_PER_CONNECTION = 1
RESERVED_DESCRIPTORS = 256
"""Descriptors kept free of connections: for staging files, DuckDB, Redis and the logs."""
LOG_REPEAT_SECONDS = 10.0


class HeadTimeoutProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request head does not arrive in time."""

    head_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._head_cycle = self.cycle
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if getattr(self, "_head_timer", None) is not None:
            assert self._head_timer is not None
            self._head_timer.cancel()
            self._head_timer = None

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and self.cycle is not self._head_cycle:  # a new request head arrived
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()  # the next request's head must come in time too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class RepeatFilter(logging.Filter):
    """Lets the first of a run of identical log messages through, then one summary per interval."""

    def __init__(self, interval: float = LOG_REPEAT_SECONDS) -> None:
        super().__init__()
        self.interval = interval
        self._seen: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.msg}"
        now = time.monotonic()
        first, suppressed = self._seen.get(key, (0.0, 0))
        if now - first >= self.interval:
            if suppressed:
                record.msg = f"{record.msg} (and {suppressed} more like it in the last {self.interval:.0f} s)"
            self._seen[key] = (now, 0)
            return True
        self._seen[key] = (first, suppressed + 1)
        return False


def raise_descriptor_limit() -> int:
    """Raise the soft limit of open files to the hard one; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_limit(descriptors: int) -> int:
    """How many connections uvicorn keeps before it answers 503: what the descriptors leave room for."""
    return max(16, (descriptors - RESERVED_DESCRIPTORS) // DESCRIPTORS_PER_CONNECTION)


def logged_app() -> logs.AccessLog:
    """The app uvicorn serves: Stockyard's, with an access line for every request (unknown routes too)."""
    from service.app import create_app

    return logs.AccessLog(create_app())


def run_api(settings: Settings, **options: Any) -> None:
    """Serve the API until stopped (`stockyard api`)."""
    HeadTimeoutProtocol.head_timeout = settings.header_timeout_seconds
    logs.configure(settings)
    logger.info(
        "Stockyard API on http://%s:%d (docs /schema, jobs page /ui, probes /health /ready /metrics); Redis at %s",
        settings.host,
        settings.port,
        logs.redacted(settings.effective_redis_url),
    )
    logging.getLogger("asyncio").addFilter(RepeatFilter())
    logging.getLogger("uvicorn.error").addFilter(RepeatFilter())
    uvicorn.run(
        "service.server:logged_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        http=HeadTimeoutProtocol,
        limit_concurrency=connection_limit(raise_descriptor_limit()),
        timeout_keep_alive=5,
        timeout_graceful_shutdown=30,
        log_config=None,  # service.logs has set up the loggers
        **options,
    )
