"""Webhooks: when a job of an organization ends, Stockyard POSTs its status to the organization's endpoints.

Endpoints and deliveries live in `webhooks.sqlite3` in the data directory (like the keys). When a job
reaches COMPLETED or FAILED, one delivery per endpoint is recorded (its id, stable across retries, is
the `webhook-id`); a sender thread in every worker claims due deliveries and POSTs them, signed per the
Standard Webhooks spec (`webhook-id`, `webhook-timestamp`, `webhook-signature`: an HMAC-SHA256 of
"{id}.{timestamp}.{body}" with the endpoint's secret, shown once when the endpoint is made). A
delivery that is not answered 2xx within STOCKYARD_WEBHOOK_TIMEOUT is tried again after a wait that
doubles from STOCKYARD_WEBHOOK_RETRY_BASE, for up to a day; every attempt is recorded. Sending never
happens in a lane or a prepare: a receiver that is slow, down or failing never delays an import.

Outbound addresses are checked when an endpoint is made and before every attempt: a URL whose host
resolves to a loopback, private, link-local (cloud metadata), or otherwise non-public address is refused
unless STOCKYARD_WEBHOOK_ALLOWED_NETWORKS lists its network.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import logging
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import redis
from standardwebhooks import Webhook

from service import metrics
from service.errors import BadRequestError, NotFoundError
from service.job import JobRecord, iso
from service.settings import Settings

MAX_ENDPOINTS = 20
"""Endpoints per organization."""
MAX_URL_LENGTH = 2048
RETRY_FOR_SECONDS = 24 * 3600.0
EVENTS = {"COMPLETED": "import.completed", "FAILED": "import.failed"}

logger = logging.getLogger("stockyard.webhooks")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (
    endpoint_id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, url TEXT NOT NULL, secret TEXT NOT NULL,
    created_at TEXT NOT NULL, removed_at TEXT);
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY, endpoint_id TEXT NOT NULL, organization_id TEXT NOT NULL, job_id TEXT NOT NULL,
    event TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL, claimed_until REAL NOT NULL DEFAULT 0, created_at TEXT NOT NULL,
    first_attempt_at REAL);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id TEXT NOT NULL, attempt INTEGER NOT NULL, attempted_at TEXT NOT NULL, status_code INTEGER,
    error TEXT, seconds REAL NOT NULL, PRIMARY KEY (delivery_id, attempt));
"""


class Endpoint(msgspec.Struct, rename="camel"):
    endpoint_id: str
    url: str
    created_at: str
    secret: str | None = None  # only in the answer that made it


class Attempt(msgspec.Struct, rename="camel"):
    delivery_id: str
    endpoint_id: str
    job_id: str
    event: str
    attempt: int
    attempted_at: str
    status_code: int | None
    error: str | None
    seconds: float
    state: str  # of the delivery: pending (tried again later), delivered, or failed (gave up)


@dataclass(frozen=True)
class Due:
    delivery_id: str
    url: str
    secret: str
    payload: str
    attempts: int
    first_attempt_at: float | None


class WebhookStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = settings.data_dir / "webhooks.sqlite3"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            connection.executescript(_SCHEMA) if not _ready.get(self.path) else None
            _ready[self.path] = True
            yield connection
        finally:
            connection.close()

    # --- endpoints ------------------------------------------------------------------------------

    def add(self, organization_id: str, url: str) -> Endpoint:
        """A new endpoint; the answer is the only time its secret is shown."""
        check_url(url, self.settings)
        endpoint = Endpoint(
            endpoint_id="wh_" + secrets.token_hex(8),
            url=url,
            created_at=iso(datetime.now(UTC)),
            secret="whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        )
        with self._connect() as db:
            (count,) = db.execute(
                "SELECT count(*) FROM endpoints WHERE organization_id = ? AND removed_at IS NULL", [organization_id]
            ).fetchone()
            if count >= MAX_ENDPOINTS:
                raise BadRequestError(f"an organization has at most {MAX_ENDPOINTS} webhook endpoints")
            db.execute(
                "INSERT INTO endpoints VALUES (?, ?, ?, ?, ?, NULL)",
                [endpoint.endpoint_id, organization_id, url, endpoint.secret, endpoint.created_at],
            )
        return endpoint

    def endpoints(self, organization_id: str | None = None) -> list[tuple[str, Endpoint]]:
        """(organization, endpoint) of each active endpoint, without secrets."""
        query = "SELECT organization_id, endpoint_id, url, created_at FROM endpoints WHERE removed_at IS NULL"
        arguments: list[Any] = []
        if organization_id is not None:
            query += " AND organization_id = ?"
            arguments.append(organization_id)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY created_at", arguments).fetchall()
        return [(org, Endpoint(endpoint_id=e, url=u, created_at=c)) for org, e, u, c in rows]

    def remove(self, endpoint_id: str, organization_id: str | None = None) -> None:
        query = "UPDATE endpoints SET removed_at = ? WHERE endpoint_id = ? AND removed_at IS NULL"
        arguments: list[Any] = [iso(datetime.now(UTC)), endpoint_id]
        if organization_id is not None:
            query += " AND organization_id = ?"
            arguments.append(organization_id)
        with self._connect() as db:
            if db.execute(query, arguments).rowcount == 0:
                raise NotFoundError(f"no webhook endpoint {endpoint_id}")
            db.execute(
                "UPDATE deliveries SET state = 'failed' WHERE endpoint_id = ? AND state = 'pending'", [endpoint_id]
            )

    def organizations_with_endpoints(self) -> set[str]:
        """Read once a second at most: a job of an organization without endpoints costs nothing more."""
        now = time.monotonic()
        cached = _organizations.get(self.path)
        if cached is None or now - cached[0] > 1.0:
            if not self.path.exists():
                return set()
            with self._connect() as db:
                rows = db.execute("SELECT DISTINCT organization_id FROM endpoints WHERE removed_at IS NULL").fetchall()
            cached = (now, {row[0] for row in rows})
            _organizations[self.path] = cached
        return cached[1]

    # --- deliveries -----------------------------------------------------------------------------

    def job_ended(self, record: JobRecord, payload: dict[str, Any]) -> int:
        """Record a delivery to each of the organization's endpoints; how many. Safe to call again."""
        event = EVENTS.get(record.status)
        if event is None or record.organization_id not in self.organizations_with_endpoints():
            return 0
        body = json.dumps({"type": event, "timestamp": iso(datetime.now(UTC)), "data": payload})
        now = time.time()
        with self._connect() as db:
            endpoints = db.execute(
                "SELECT endpoint_id FROM endpoints WHERE organization_id = ? AND removed_at IS NULL",
                [record.organization_id],
            ).fetchall()
            for (endpoint_id,) in endpoints:
                db.execute(
                    "INSERT OR IGNORE INTO deliveries (delivery_id, endpoint_id, organization_id, job_id, event,"
                    " payload, state, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                    [
                        f"msg_{record.job_id}_{endpoint_id}",
                        endpoint_id,
                        record.organization_id,
                        record.job_id,
                        event,
                        body,
                        now,
                        iso(datetime.now(UTC)),
                    ],
                )
        return len(endpoints)

    def claim_due(self, limit: int, hold_seconds: float) -> list[Due]:
        """Take due deliveries for this sender, for `hold_seconds` (a sender that dies lets go)."""
        now = time.time()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(
                "SELECT d.delivery_id, e.url, e.secret, d.payload, d.attempts, d.first_attempt_at FROM deliveries d"
                " JOIN endpoints e USING (endpoint_id) WHERE d.state = 'pending' AND d.next_attempt_at <= ?"
                " AND d.claimed_until <= ? ORDER BY d.next_attempt_at LIMIT ?",
                [now, now, limit],
            ).fetchall()
            db.executemany(
                "UPDATE deliveries SET claimed_until = ? WHERE delivery_id = ?",
                [(now + hold_seconds, r[0]) for r in rows],
            )
            db.execute("COMMIT")
        return [Due(*row) for row in rows]

    def record_attempt(self, due: Due, status_code: int | None, error: str | None, seconds: float) -> str:
        """Record one attempt; schedule the next (or give up after a day). Returns the delivery's state."""
        attempt = due.attempts + 1
        first = due.first_attempt_at or time.time()
        if status_code is not None and 200 <= status_code < 300:
            state, next_at = "delivered", 0.0
        else:
            wait = self.settings.webhook_retry_base_seconds * 2 ** (attempt - 1)
            next_at = time.time() + wait
            state = "pending" if next_at - first <= RETRY_FOR_SECONDS else "failed"
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?)",
                [due.delivery_id, attempt, iso(datetime.now(UTC)), status_code, error, seconds],
            )
            db.execute(
                "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?, claimed_until = 0,"
                " first_attempt_at = coalesce(first_attempt_at, ?) WHERE delivery_id = ?",
                [state, attempt, next_at, first, due.delivery_id],
            )
        return state

    def attempts(self, organization_id: str, job_id: str | None = None, limit: int = 100) -> list[Attempt]:
        query = (
            "SELECT a.delivery_id, d.endpoint_id, d.job_id, d.event, a.attempt, a.attempted_at, a.status_code,"
            " a.error, a.seconds, d.state FROM attempts a JOIN deliveries d USING (delivery_id)"
            " WHERE d.organization_id = ?"
        )
        arguments: list[Any] = [organization_id]
        if job_id is not None:
            query += " AND d.job_id = ?"
            arguments.append(job_id)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY a.attempted_at DESC, a.attempt DESC LIMIT ?", [*arguments, limit])
            return [Attempt(*row) for row in rows.fetchall()]


_ready: dict[Path, bool] = {}
_organizations: dict[Path, tuple[float, set[str]]] = {}


def check_url(url: str, settings: Settings) -> None:
    """A URL Stockyard may send to: http(s), with a host that resolves to public addresses only (or to a
    network the operator allowed). BadRequestError saying why otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise BadRequestError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequestError("a webhook URL must be http:// or https:// with a host")
    try:
        addresses = {
            str(info[4][0]) for info in socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
        }
    except (socket.gaierror, UnicodeError):
        raise BadRequestError(f"the host of the webhook URL ({parts.hostname}) does not resolve") from None
    allowed = [
        ipaddress.ip_network(net.strip(), strict=False) for net in settings.webhook_allowed_networks if net.strip()
    ]
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if any(address in network for network in allowed):
            continue
        if not address.is_global or address.is_multicast:
            raise BadRequestError(
                f"the webhook URL's host resolves to {address}, which is not a public address (loopback, private,"
                " link-local or metadata): refused unless STOCKYARD_WEBHOOK_ALLOWED_NETWORKS allows it"
            )


def sign(secret: str, delivery_id: str, body: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(delivery_id, at, body),
        "content-type": "application/json",
        "user-agent": "Stockyard-Webhooks/1",
    }


def deliver(store: WebhookStore, due: Due) -> str:
    """One attempt of one delivery: check the address, POST, record what came of it."""
    started = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:
        check_url(due.url, store.settings)
        headers = sign(due.secret, due.delivery_id, due.payload, datetime.now(UTC))
        with httpx.Client(timeout=store.settings.webhook_timeout_seconds, follow_redirects=False) as client:
            status_code = client.post(due.url, content=due.payload.encode(), headers=headers).status_code
        if not 200 <= status_code < 300:
            error = f"answered {status_code}"
    except BadRequestError as refused:
        error = f"refused: {refused.message}"
    except httpx.HTTPError as failure:
        error = f"{type(failure).__name__}: {failure}"[:500]
    return store.record_attempt(due, status_code, error, time.perf_counter() - started)


class Sender:
    """The sender of a worker: a thread claiming due deliveries, and a few more sending them."""

    def __init__(self, settings: Settings, connection: redis.Redis, parallel: int = 4) -> None:
        self.store = WebhookStore(settings)
        self.connection = connection
        self.parallel = parallel
        self.hold = settings.webhook_timeout_seconds * 2 + 5

    def run(self, stopping: threading.Event) -> None:
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="webhook") as pool:
            while not stopping.is_set():
                try:
                    due = self.store.claim_due(self.parallel * 4, self.hold)
                except sqlite3.Error:
                    logger.warning("could not read webhook deliveries", exc_info=True)
                    due = []
                for delivery in due:
                    pool.submit(self._send, delivery)
                stopping.wait(0.2 if due else 1.0)

    def _send(self, due: Due) -> None:
        try:
            state = deliver(self.store, due)
        except Exception:
            logger.warning("a webhook delivery failed to run", exc_info=True)
            return
        metrics.count(self.connection, "stockyard_webhook_deliveries", {"pending": "retrying"}.get(state, state))
        if state == "failed":
            logger.warning("webhook delivery %s gave up after a day of retries", due.delivery_id)


def notify_job_ended(settings: Settings, records: list[JobRecord]) -> None:
    """Record the deliveries of jobs that end, before their end is saved: a process killed in between
    saves it on its next try and records them again (a delivery's id is its job and endpoint, so once).
    A failure here is logged, and the jobs end as they are."""
    from service.views import status_view  # the payload is the status, as GET /status answers it

    for record in records:
        try:
            WebhookStore(settings).job_ended(record, msgspec.to_builtins(status_view(record, settings)))
        except Exception:
            logger.warning("could not record the webhook deliveries of job %s", record.job_id, exc_info=True)
