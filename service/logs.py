"""Logging: one line per request and one per job stage, readable by people or, with
STOCKYARD_LOG_FORMAT=json, as JSON lines for a log pipeline. Every process (API, workers, serve) sets
it up the same way; Stockyard's, uvicorn's and RQ's loggers all go through it. Nothing logged ever holds
an API key: requests are logged by method, path, status, size and time, never by their headers.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import StockyardError
from service.job import JobRecord
from service.settings import Settings

_LOGGERS = ("stockyard", "uvicorn", "uvicorn.error", "rq.worker", "asyncio", "litestar")
access_logger = logging.getLogger("stockyard.access")
error_logger = logging.getLogger("stockyard.api")


class JsonFormatter(logging.Formatter):
    """A JSON object per line: time, level, logger, message, the record's extra fields, the error."""

    _STANDARD = {*vars(logging.makeLogRecord({})), "color_message"}  # uvicorn's, with terminal colours

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in self._STANDARD and not k.startswith("_")})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(settings: Settings) -> None:
    """Send Stockyard's, uvicorn's and RQ's log lines to stderr, in the configured format. Idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(settings.log_level)
    logging.getLogger("uvicorn.access").disabled = True  # ours is stockyard.access


class AccessLog:
    """ASGI middleware: one line per request, when its response is done."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        started = time.perf_counter()
        status = 500
        sent = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            seconds = time.perf_counter() - started
            client = scope.get("client")
            access_logger.info(
                "%s %s %d %d bytes %.3f s",
                method,
                path,
                status,
                sent,
                seconds,
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "bytes": sent,
                    "seconds": round(seconds, 4),
                    "client": client[0] if client else None,
                },
            )


def log_request_error(exception: Exception, scope: Scope) -> None:
    """Litestar's after_exception hook: an unexpected error is logged with its traceback (the client
    gets a bare 500), a 5xx of ours (the queue is away, storage is full) as a warning; 4xx are the
    caller's and only in the access line."""
    status = getattr(exception, "status_code", 500)
    if status < 500:
        return
    where = f"{scope.get('method', '')} {scope.get('path', '')}"
    if isinstance(exception, StockyardError):
        error_logger.warning("%s answered %d: %s", where, status, exception.message)
    else:
        error_logger.error("%s failed: %r", where, exception, exc_info=exception)


def redacted(url: str) -> str:
    """A URL (or a libpq `key=value` connection string) fit for a log line: its password replaced."""
    if "://" not in url:
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def job_stage(
    logger: logging.Logger,
    stage: str,
    record: JobRecord,
    outcome: str,
    seconds: float | None = None,
    level: int = logging.INFO,
    cause: BaseException | None = None,
    **fields: Any,
) -> None:
    """One line for a stage a job went through (accepted, prepared, applied, failed, …), with the job's
    identity, its rows and how long the stage took, as text and as JSON fields; `cause`, an unexpected
    error, adds its traceback."""
    details = {
        k: v
        for k, v in {"rows": record.row_count, "failed_rows": record.failed_count, **fields}.items()
        if v is not None
    }
    text = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in details.items())
    took = f" in {seconds:.3f} s" if seconds is not None else ""
    logger.log(
        level,
        "%s job %s (%s, %s): %s%s, %s",
        stage,
        record.job_id,
        record.organization_id,
        record.kind,
        text,
        took,
        outcome,
        exc_info=cause,
        extra={
            "stage": stage,
            "job_id": record.job_id,
            "organization": record.organization_id,
            "kind": record.kind,
            "outcome": outcome,
            "seconds": None if seconds is None else round(seconds, 4),
            **details,
        },
    )
