"""What an SRE points a load balancer and Prometheus at: /health, /ready and /metrics, on real processes."""

from __future__ import annotations

import json
import signal
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Api
from tests.service.processes import Stockyard, free_port, wait_for

pytestmark = pytest.mark.slow


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_health_answers_without_a_key_and_the_openapi_document_lists_the_operations(api: Api) -> None:
    assert api.client.get("/health").json() == {"status": "ok"}
    paths = api.client.get("/schema/openapi.json").json()["paths"]
    assert {"/health", "/ready", "/metrics"} <= set(paths)


def ready(stockyard: Stockyard) -> httpx.Response:
    return httpx.get(f"{stockyard.url}/ready", timeout=10)


def test_ready_names_the_part_that_fails_until_every_part_answers(stockyard: Stockyard) -> None:
    stockyard.api()
    waiting = ready(stockyard)
    assert waiting.status_code == 503
    checks = waiting.json()["checks"]
    assert checks["redis"] == checks["staging"] == "ok"
    assert "no worker" in checks["workers"] and "no worker holds the warehouse" in checks["applier"]
    worker = stockyard.start("worker")
    wait_for(lambda: ready(stockyard).status_code == 200, 30, "the service to be ready")
    assert ready(stockyard).json() == {
        "status": "ready",
        "checks": {"redis": "ok", "staging": "ok", "workers": "ok", "applier": "ok"},
    }
    worker.kill_group(signal.SIGTERM)
    worker.wait(30)
    wait_for(lambda: ready(stockyard).status_code == 503, 60, "the service to say it cannot finish work")
    stockyard.redis_server.kill()  # type: ignore[attr-defined]
    gone = ready(stockyard)
    assert gone.status_code == 503 and gone.json()["checks"]["redis"].startswith("unreachable")


def test_metrics_count_across_processes(stockyard: Stockyard) -> None:
    """Two API processes and a worker: either API's /metrics shows what all of them did."""
    stockyard.api()
    port = free_port()
    stockyard.start("api", "--port", str(port), log="api-2.log")
    second = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(f"{second}/health"), 30, "the second API")
    stockyard.start("worker")
    good = stockyard.accept("inventory", {"levels": [{"skuId": "A", "locationId": "L"}, {"skuId": ""}]})
    posted = httpx.post(
        f"{second}/api/import/suppliers",
        json={"suppliers": [{"externalId": "S"}]},
        headers={"x-api-key": stockyard.key},
    )
    assert posted.status_code == 202
    stockyard.wait_finished([good, posted.json()["jobId"]])
    found = samples(httpx.get(f"{stockyard.url}/metrics", timeout=10).text)
    assert found[("stockyard_jobs_accepted_total", (("kind", "inventory"),))] == 1
    assert found[("stockyard_jobs_accepted_total", (("kind", "suppliers"),))] == 1
    assert found[("stockyard_jobs_completed_total", (("kind", "inventory"),))] == 1
    assert found[("stockyard_rows_failed_total", (("kind", "inventory"),))] == 1
    assert found[("stockyard_rows_processed_total", (("kind", "suppliers"),))] == 1
    assert found[("stockyard_bytes_received_total", (("kind", "inventory"),))] > 50
    assert found[("stockyard_job_duration_seconds_count", (("kind", "inventory"),))] == 1
    assert found[("stockyard_stage_duration_seconds_count", (("kind", "inventory"), ("stage", "prepare")))] == 1
    assert found[("stockyard_stage_duration_seconds_count", (("kind", "inventory"), ("stage", "apply")))] == 1
    assert found[("stockyard_open_jobs", ())] == 0
    assert ("stockyard_queue_depth", (("queue", "stockyard-prepare"),)) in found


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _json_lines(text: str) -> list[dict[str, object]]:
    """The whole lines of a log being written: the last may be cut short."""
    whole = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in whole.splitlines() if line.startswith("{")]


def test_logs_have_an_access_line_per_request_and_a_line_per_job_stage_never_the_key(stockyard: Stockyard) -> None:
    env = stockyard.environment(STOCKYARD_LOG_FORMAT="json")
    api = stockyard.api(env=env)
    worker = stockyard.start("worker", env=env)
    job_id = stockyard.accept("inventory", {"levels": [{"skuId": "A", "locationId": "L"}, {"skuId": ""}]})
    stockyard.wait_finished([job_id])
    assert httpx.get(f"{stockyard.url}/no/such/route", timeout=10).status_code == 404
    stockyard.redis_server.kill()  # type: ignore[attr-defined]
    refused = stockyard.post("suppliers", {"suppliers": [{"externalId": "S"}]})
    assert refused.status_code == 503

    def access_lines() -> set[tuple[object, ...]] | None:  # a request's line is written once its answer is sent
        lines = _json_lines(api.output())
        found = {
            (line["method"], line["path"], line["status"]) for line in lines if line["logger"] == "stockyard.access"
        }
        return found if ("POST", "/api/import/suppliers", 503) in found else None

    access = wait_for(access_lines, 10, "the access line of the refused POST")
    api_lines = _json_lines(api.output())
    assert ("POST", "/api/import/inventory", 202) in access
    assert ("GET", "/no/such/route", 404) in access
    posted = next(line for line in api_lines if line.get("status") == 202)
    assert posted["bytes"] > 0 and posted["seconds"] >= 0 and posted["client"] == "127.0.0.1"
    accepted = next(line for line in api_lines if line.get("stage") == "accepted")
    assert accepted["job_id"] == job_id and accepted["organization"] == "acme" and accepted["rows"] == 2
    started, unavailable = (line for line in api_lines if line["logger"] == "stockyard.api")
    assert started["level"] == "info" and f"Stockyard API on {stockyard.url}" in str(started["message"])
    assert unavailable["level"] == "warning" and "job queue is unavailable" in str(unavailable["message"])

    def stages_logged() -> dict[str, Any] | None:  # the applied line follows the saved status by a moment
        found = {line["stage"]: line for line in _json_lines(worker.output()) if line.get("job_id") == job_id}
        return found if "applied" in found else None

    stages = wait_for(stages_logged, 10, "the worker's applied line")
    assert stages["prepared"]["failed_rows"] == 1 and stages["prepared"]["kind"] == "inventory"
    assert stages["applied"]["outcome"] == "completed" and stages["applied"]["seconds"] >= 0
    for process in (api, worker):
        assert stockyard.key not in process.output()
        assert stockyard.key.split("_", 2)[2] not in process.output()  # the secret may hold "_" itself


def test_an_unexpected_request_error_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    from service.logs import log_request_error

    try:
        raise ValueError("a bug")
    except ValueError as error:
        raised = error
        with caplog.at_level("INFO", logger="stockyard.api"):
            log_request_error(error, {"type": "http", "method": "GET", "path": "/x"})  # type: ignore[arg-type]
    (record,) = caplog.records
    assert record.levelname == "ERROR" and "GET /x failed" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[1] is raised
