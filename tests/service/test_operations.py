"""What an SRE points a load balancer and Prometheus at: /health, /ready and /metrics, on real processes."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Api
from tests.service.processes import Stockyard, external_redis, free_port, wait_for

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


@pytest.fixture
def stockyard(tmp_path: Path) -> Iterator[Stockyard]:
    with external_redis(tmp_path / "redis") as server:
        created = Stockyard(tmp_path / "stockyard", redis_url=server.url)
        created.redis_server = server  # type: ignore[attr-defined]
        yield created
        created.cleanup()


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
