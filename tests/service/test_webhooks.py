"""Webhooks through real processes and real receivers on 127.0.0.1: signed, retried, recorded, never in the way."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from litestar.testing import TestClient
from standardwebhooks import Webhook

from service.app import create_app
from service.cli import main
from tests.conftest import Api
from tests.service.processes import Stockyard, free_port, wait_for

pytestmark = pytest.mark.slow


class Receiver:
    """An HTTP server on 127.0.0.1 answering each POST as `answers` says: a status, or "slow" (sleep)."""

    def __init__(self, answers: list[int | str], port: int | None = None) -> None:
        self.answers = list(answers)
        self.received: list[tuple[dict[str, str], bytes, float]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()))
                answer = receiver.answers.pop(0) if len(receiver.answers) > 1 else receiver.answers[0]
                if answer == "slow":
                    time.sleep(8)
                    answer = 200
                self.send_response(int(answer))
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/stockyard"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stockyard(tmp_path: Path) -> Iterator[Stockyard]:
    created = Stockyard(tmp_path / "stockyard")
    yield created
    created.cleanup()


def serve(stockyard: Stockyard) -> Any:
    return stockyard.serve(
        STOCKYARD_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        STOCKYARD_WEBHOOK_RETRY_BASE="0.5",
        STOCKYARD_WEBHOOK_TIMEOUT="2",
    )


def register(stockyard: Stockyard, url: str, organization: str = "acme") -> dict[str, Any]:
    response = httpx.post(
        f"{stockyard.url}/api/webhooks", json={"url": url}, headers={"x-api-key": stockyard.key_of(organization)}
    )
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


def deliveries(stockyard: Stockyard, job_id: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{stockyard.url}/api/webhooks/deliveries", params={"jobId": job_id}, headers={"x-api-key": stockyard.key}
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_an_ended_job_is_posted_signed_to_each_endpoint(stockyard: Stockyard) -> None:
    serve(stockyard)
    receiver = Receiver([200])
    try:
        endpoint = register(stockyard, receiver.url)
        assert endpoint["secret"].startswith("whsec_")
        listed = httpx.get(f"{stockyard.url}/api/webhooks", headers={"x-api-key": stockyard.key}).json()["items"]
        assert [(e["endpointId"], e.get("secret")) for e in listed] == [(endpoint["endpointId"], None)]  # shown once
        job = stockyard.accept("suppliers", {"suppliers": [{"externalId": "A"}, {"externalId": ""}]})
        wait_for(lambda: receiver.received, 30, "the webhook")
        headers, body, _ = receiver.received[0]
        event = Webhook(endpoint["secret"]).verify(body, headers)  # raises unless the signature is right
        assert event["type"] == "import.completed" and headers["webhook-id"] == f"msg_{job}_{endpoint['endpointId']}"
        assert event["data"] == stockyard.status(job)  # the status, as GET answers it
        assert event["data"]["failedCount"] == 1
        (attempt,) = wait_for(lambda: deliveries(stockyard, job), 10, "the attempt's record")
        assert (attempt["statusCode"], attempt["state"], attempt["attempt"]) == (200, "delivered", 1)
    finally:
        receiver.stop()


def test_a_failing_then_recovering_receiver_gets_it_on_a_later_attempt_each_one_recorded(
    stockyard: Stockyard,
) -> None:
    serve(stockyard)
    receiver = Receiver([500, 503, 200])
    try:
        register(stockyard, receiver.url)
        job = stockyard.accept("suppliers", {"suppliers": [{"externalId": "A"}]})
        wait_for(lambda: len(receiver.received) >= 3, 60, "three attempts")
        attempts = wait_for(lambda: [a for a in deliveries(stockyard, job) if a["state"] == "delivered"], 10, "done")
        assert len({headers["webhook-id"] for headers, _, _ in receiver.received}) == 1  # one delivery, retried
        assert sorted(a["statusCode"] for a in deliveries(stockyard, job)) == [200, 500, 503]
        assert attempts
    finally:
        receiver.stop()


def test_a_receiver_that_is_down_then_up_and_one_that_is_slow_never_delay_an_import(stockyard: Stockyard) -> None:
    serve(stockyard)
    port = free_port()
    slow = Receiver(["slow"])
    try:
        register(stockyard, f"http://127.0.0.1:{port}/down")  # nothing listens there yet
        register(stockyard, slow.url)
        job = stockyard.accept("suppliers", {"suppliers": [{"externalId": "A"}]})
        (done,) = stockyard.wait_finished([job])  # the import ends whatever the receivers do
        assert done["status"] == "COMPLETED"
        assert not slow.received or time.monotonic() - slow.received[0][2] < 8  # its answer is not awaited
        wait_for(lambda: any("ConnectError" in (a["error"] or "") for a in deliveries(stockyard, job)), 30, "a failure")
        up = Receiver([200], port=port)  # the receiver comes back
        try:
            wait_for(lambda: up.received, 60, "a delivery once it is up")
        finally:
            up.stop()
        timed_out = wait_for(
            lambda: [a for a in deliveries(stockyard, job) if "Timeout" in (a["error"] or "")], 30, "a timed-out try"
        )
        assert timed_out[0]["state"] == "pending"
    finally:
        slow.stop()


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "not a url", "http://127.0.0.1:9/x", "http://169.254.169.254/latest", "http://10.1.2.3/"],
    ids=["ftp", "garbage", "loopback", "metadata", "private"],
)
def test_webhook_urls_that_are_not_public_http_are_400(api: Api, url: str) -> None:
    response = api.client.post("/api/webhooks", json={"url": url}, headers={"x-api-key": api.key})
    assert response.status_code == 400, response.text


def test_an_endpoint_is_removed_only_by_its_organization(api: Api) -> None:
    allowed = dataclasses.replace(api.settings, webhook_allowed_networks=("127.0.0.0/8",))
    with TestClient(create_app(allowed, api.connection)) as client:
        made = client.post("/api/webhooks", json={"url": "http://127.0.0.1:9/x"}, headers={"x-api-key": api.key})
        assert made.status_code == 201, made.text
        endpoint_id = made.json()["endpointId"]
        other = api.create_key("globex")
        assert client.delete(f"/api/webhooks/{endpoint_id}", headers={"x-api-key": other}).status_code == 404
        assert client.delete(f"/api/webhooks/{endpoint_id}", headers={"x-api-key": api.key}).status_code == 204
        assert client.get("/api/webhooks", headers={"x-api-key": api.key}).json()["items"] == []


def test_the_cli_adds_lists_and_removes_endpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKYARD_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    data = ["--data-dir", str(tmp_path / "data")]
    added = CliRunner().invoke(main, ["webhooks", "add", *data, "--org", "acme", "--url", "http://127.0.0.1:9/x"])
    assert added.exit_code == 0, added.output
    secret = added.output.strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    listed = CliRunner().invoke(main, ["webhooks", "list", *data])
    endpoint_id = listed.output.split()[0]
    assert "acme" in listed.output and secret not in listed.output
    assert CliRunner().invoke(main, ["webhooks", "remove", *data, endpoint_id]).exit_code == 0
    assert CliRunner().invoke(main, ["webhooks", "list", *data]).output.strip() == ""
    refused = CliRunner().invoke(main, ["webhooks", "add", *data, "--org", "acme", "--url", "ftp://x/y"])
    assert refused.exit_code == 2 and "http" in refused.output


def test_the_wait_before_each_retry_doubles_and_the_delivery_gives_up_after_a_day(api: Api) -> None:
    """The schedule itself, on the store: 1x, 2x, 4x ... the base; nothing is tried past a day."""
    import sqlite3

    from service.webhooks import Due, WebhookStore

    store = WebhookStore(dataclasses.replace(api.settings, webhook_retry_base_seconds=30))
    store.endpoints()  # creates the database
    with sqlite3.connect(store.path) as db:
        db.execute(
            "INSERT INTO deliveries (delivery_id, endpoint_id, organization_id, job_id, event, payload, state,"
            " next_attempt_at, created_at) VALUES ('msg_x', 'wh', 'acme', 'j', 'e', '{}', 'pending', 0, '')"
        )
    due = Due("msg_x", "http://127.0.0.1:9/", "whsec_" + "A" * 44, "{}", attempts=0, first_attempt_at=None)
    waits = []
    for attempt in range(3):
        before = time.time()
        assert store.record_attempt(due, 500, "answered 500", 0.1) == "pending"
        with sqlite3.connect(store.path) as db:
            (next_at,) = db.execute("SELECT next_attempt_at FROM deliveries WHERE delivery_id = 'msg_x'").fetchone()
        waits.append(round(next_at - before))
        due = dataclasses.replace(due, attempts=attempt + 1, first_attempt_at=before)
    assert waits == [30, 60, 120]
    stale = dataclasses.replace(due, attempts=10, first_attempt_at=time.time() - 86_000)
    assert store.record_attempt(stale, None, "ConnectError", 0.1) == "failed"  # a day of tries is enough
