"""What an integration needs around each import: list its jobs, cancel one, retry a POST safely, dry-run."""

from __future__ import annotations

from typing import Any

import pytest

from service.job_files import JobFiles
from tests.conftest import Api


def accept(api: Api, kind: str, body: Any, key: str | None = None, **headers: str) -> str:
    response = api.post(kind, body, key=key, headers=headers)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["jobId"]
    return job_id


def listing(api: Api, key: str | None = None, **query: Any) -> dict[str, Any]:
    response = api.client.get("/api/import/jobs", params=query, headers={"x-api-key": key or api.key})
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def supplier(name: str) -> dict[str, Any]:
    return {"suppliers": [{"externalId": name}]}


# --- listing ----------------------------------------------------------------------------------------


def test_jobs_are_listed_newest_first_in_pages_that_hold_still_while_jobs_arrive(api: Api) -> None:
    job_ids = [accept(api, "suppliers", supplier(f"S{i}")) for i in range(5)]
    first = listing(api, limit=2)
    assert [item["jobId"] for item in first["items"]] == [job_ids[4], job_ids[3]]
    assert set(first["items"][0]) == {
        "jobId", "type", "status", "rowCount", "processedCount", "failedCount", "createdAt", "startedAt", "completedAt"
    }  # fmt: skip
    later = accept(api, "suppliers", supplier("LATE"))  # arrives between two pages
    second = listing(api, limit=2, cursor=first["nextCursor"])
    third = listing(api, limit=2, cursor=second["nextCursor"])
    assert [item["jobId"] for item in second["items"]] == [job_ids[2], job_ids[1]]
    assert [item["jobId"] for item in third["items"]] == [job_ids[0]] and third["nextCursor"] is None
    assert listing(api, limit=1)["items"][0]["jobId"] == later  # only a first page shows it


def test_jobs_are_filtered_by_type_status_and_time_and_scoped_to_the_organization(api: Api) -> None:
    other = api.create_key("globex")
    done = accept(api, "suppliers", supplier("A"))
    api.work()
    pending = accept(api, "catalog", {"products": [{"externalId": "P"}]})
    accept(api, "suppliers", supplier("G"), key=other)
    assert [i["jobId"] for i in listing(api, type="catalog")["items"]] == [pending]
    assert [i["jobId"] for i in listing(api, status="COMPLETED")["items"]] == [done]
    created = listing(api)["items"][0]["createdAt"]
    assert [i["jobId"] for i in listing(api, createdSince=created)["items"]] == [pending]
    assert [i["jobId"] for i in listing(api, createdBefore=created)["items"]] == [done]
    assert len(listing(api, key=other)["items"]) == 1  # globex sees only its own


@pytest.mark.parametrize(
    "query",
    [{"type": "widgets"}, {"status": "DONE"}, {"cursor": "not-a-cursor"}, {"limit": 0}, {"createdSince": "yesterday"}],
    ids=["unknown-type", "unknown-status", "malformed-cursor", "zero-limit", "bad-time"],
)
def test_bad_listing_queries_are_400(api: Api, query: dict[str, Any]) -> None:
    response = api.client.get("/api/import/jobs", params=query, headers={"x-api-key": api.key})
    assert response.status_code == 400, response.text


def test_listing_needs_the_read_scope(api: Api) -> None:
    from service.auth import Scope

    writer = api.create_key("acme", [Scope.IMPORT_WRITE])
    assert api.client.get("/api/import/jobs", headers={"x-api-key": writer}).status_code == 403
    assert api.client.get("/api/import/jobs").status_code == 401


# --- cancel -----------------------------------------------------------------------------------------


def cancel(api: Api, job_id: str, key: str | None = None) -> Any:
    return api.client.post(f"/api/import/status/{job_id}/cancel", headers={"x-api-key": key or api.key})


def test_a_pending_job_is_cancelled_at_once_and_the_next_ones_go_on_in_order(api: Api) -> None:
    first = accept(api, "inventory", {"levels": [{"skuId": "P", "locationId": "L", "quantityOnHand": 1}]})
    cancelled = accept(api, "inventory", {"levels": [{"skuId": "P", "locationId": "L", "quantityOnHand": 2}]})
    last = accept(api, "inventory", {"levels": [{"skuId": "Q", "locationId": "L", "quantityOnHand": 3}]})
    response = cancel(api, cancelled)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "FAILED" and body["completedAt"] is not None
    assert [(e["row"], e["code"]) for e in body["errors"]] == [(None, "cancelled")]
    api.work()
    assert [api.status(j).json()["status"] for j in (first, cancelled, last)] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert api.query("SELECT sku_id, quantity_on_hand FROM inventory_levels ORDER BY 1") == [("P", 1.0), ("Q", 3.0)]
    assert api.query("SELECT status FROM import_jobs WHERE job_id = ?", [cancelled]) == [("FAILED",)]


def test_a_prepared_job_not_yet_applied_is_cancelled_and_nothing_of_it_lands(api: Api) -> None:
    from service.settings import get_settings
    from service.worker import ImportWorker

    job = accept(api, "suppliers", supplier("NEVER"))
    ImportWorker(get_settings(), api.connection).work(burst=True)  # prepared; no applier has run
    assert api.status(job).json()["status"] == "PROCESSING"
    assert cancel(api, job).status_code == 200
    api.work()
    assert api.status(job).json()["errors"][0]["code"] == "cancelled"
    assert api.query("SELECT count(*) FROM suppliers") == [(0,)]


@pytest.mark.parametrize("rows", [2, 30], ids=["small: one file", "large: a file each"])
def test_a_prepared_job_whose_prepared_files_are_lost_is_prepared_again_and_lands(
    api: Api, monkeypatch: pytest.MonkeyPatch, rows: int
) -> None:
    from service.settings import get_settings
    from service.worker import ImportWorker

    monkeypatch.setenv("STOCKYARD_GROUP_MAX_ROWS", "10")
    get_settings.cache_clear()
    job = accept(api, "suppliers", {"suppliers": [{"externalId": f"S{i}"} for i in range(rows)]})
    ImportWorker(get_settings(), api.connection).work(burst=True)  # prepared; no applier has run
    prepared = sorted(get_settings().staging_dir.glob(f"*/{job}.prepared*"))
    assert [path.name.removeprefix(job) for path in prepared] == (
        [".prepared-all.arrow"] if rows <= 10 else [".prepared.parquet"]
    )
    for path in prepared:
        path.unlink()  # a disk lost them
    api.work()
    assert api.status(job).json()["status"] == "COMPLETED"
    assert api.query("SELECT count(*) FROM suppliers") == [(rows,)]


def test_a_job_that_has_ended_cannot_be_cancelled_and_another_organizations_is_not_found(api: Api) -> None:
    job = accept(api, "suppliers", supplier("A"))
    api.work()
    response = cancel(api, job)
    assert response.status_code == 409 and "ended already (COMPLETED)" in response.json()["detail"]
    other = api.create_key("globex")
    assert cancel(api, job, key=other).status_code == 404
    assert cancel(api, "0" * 32).status_code == 404
    from service.auth import Scope

    reader = api.create_key("acme", [Scope.IMPORT_READ])
    assert cancel(api, job, key=reader).status_code == 403


def test_a_cancel_survives_a_restart_of_redis(api: Api) -> None:
    job = accept(api, "suppliers", supplier("A"))
    assert cancel(api, job).status_code == 200
    api.connection.flushall()
    api.work()
    status = api.status(job).json()
    assert status["status"] == "FAILED" and status["errors"][0]["code"] == "cancelled"
    assert api.query("SELECT count(*) FROM suppliers") == [(0,)]


# --- Idempotency-Key --------------------------------------------------------------------------------


def test_the_same_key_and_body_answer_the_first_job_even_after_redis_is_lost(api: Api) -> None:
    first = api.post("suppliers", supplier("A"), headers={"idempotency-key": "order-42"})
    again = api.post("suppliers", supplier("A"), headers={"idempotency-key": "order-42"})
    assert first.status_code == again.status_code == 202
    assert again.json()["jobId"] == first.json()["jobId"] and again.headers["idempotent-replayed"] == "true"
    api.work()
    api.connection.flushall()  # as after a restart: the key is durable
    third = api.post("suppliers", supplier("A"), headers={"idempotency-key": "order-42"})
    assert third.json()["jobId"] == first.json()["jobId"] and third.json()["status"] == "COMPLETED"
    api.work()
    assert api.query("SELECT count(*) FROM import_jobs") == [(1,)]
    job_files = sorted(p.name for p in (api.settings.staging_dir / "acme").glob("*.parquet"))
    assert len([name for name in job_files if name.count(".") == 1]) == 1  # one job's upload staged


def test_the_same_key_with_another_body_is_422_and_keys_are_per_organization(api: Api) -> None:
    accept(api, "suppliers", supplier("A"), **{"idempotency-key": "k1"})
    reused = api.post("suppliers", supplier("B"), headers={"idempotency-key": "k1"})
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    elsewhere = api.post("catalog", supplier("A"), headers={"idempotency-key": "k1"})  # another kind: another request
    assert elsewhere.status_code == 422
    other = api.create_key("globex")
    assert api.post("suppliers", supplier("B"), key=other, headers={"idempotency-key": "k1"}).status_code == 202


def test_a_retry_after_a_newer_import_does_not_overwrite_it(api: Api) -> None:
    """The danger the key removes: a stale snapshot sent again would land after a newer one."""
    stale = {"levels": [{"skuId": "P", "locationId": "L", "quantityOnHand": 1}]}
    accept(api, "inventory", stale, **{"idempotency-key": "snapshot-1"})
    accept(api, "inventory", {"levels": [{"skuId": "P", "locationId": "L", "quantityOnHand": 9}]})
    accept(api, "inventory", stale, **{"idempotency-key": "snapshot-1"})  # the client's retry
    api.work()
    assert api.query("SELECT quantity_on_hand FROM inventory_levels") == [(9.0,)]


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\there"])
def test_a_malformed_idempotency_key_is_400(api: Api, key: str) -> None:
    response = api.post("suppliers", supplier("A"), headers={"idempotency-key": key})
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["detail"]


# --- dry run ----------------------------------------------------------------------------------------


def test_a_dry_run_reports_errors_and_counts_and_writes_nothing(api: Api) -> None:
    api.run("inventory", [{"skuId": "A", "locationId": "L", "quantityOnHand": 1}, {"skuId": "B", "locationId": "L"}])
    before = api.query("SELECT * EXCLUDE (created_at, updated_at) FROM inventory_levels ORDER BY 1")
    rows = [
        {"skuId": "A", "locationId": "L", "quantityOnHand": 1},  # unchanged
        {"skuId": "B", "locationId": "L", "quantityOnHand": 5},  # updated
        {"skuId": "C", "locationId": "L"},  # inserted
        {"skuId": "D", "locationId": "L", "quantityOnHand": "many"},  # a row error
    ]
    response = api.client.post(
        "/api/import/inventory?dryRun=true", json={"levels": rows}, headers={"x-api-key": api.key}
    )
    assert response.status_code == 202, response.text
    job = response.json()["jobId"]
    api.work()
    status = api.status(job).json()
    assert status["status"] == "COMPLETED" and status["dryRun"] is True
    assert (status["wouldInsert"], status["wouldUpdate"], status["wouldLeaveUnchanged"]) == (1, 1, 1)
    assert [(e["row"], e["code"]) for e in status["errors"]] == [(3, "invalid_type")]
    failed = api.client.get(f"/api/import/status/{job}/failed-rows", headers={"x-api-key": api.key}).json()
    assert [row["skuId"] for row in failed["levels"]] == ["D"]
    after = api.query("SELECT * EXCLUDE (created_at, updated_at) FROM inventory_levels ORDER BY 1")
    assert after == before
    assert api.query("SELECT count(*) FROM import_jobs WHERE job_id = ?", [job]) == [(0,)]
    assert "dryRun" not in api.status(api.post("suppliers", supplier("X")).json()["jobId"]).json()


def test_a_dry_run_of_orders_counts_a_reimport_with_the_same_lines_as_unchanged(api: Api) -> None:
    order = {"externalOrderId": "O1", "lines": [{"skuId": "A", "quantity": 2, "locationId": "S"}]}
    api.run("orders", [order])
    changed = {"externalOrderId": "O1", "lines": [{"skuId": "A", "quantity": 3, "locationId": "S"}]}
    new = {"externalOrderId": "O2", "lines": [{"skuId": "B", "quantity": 1, "locationId": "S"}]}
    for rows, expected in (([order], (0, 0, 1)), ([changed, new], (1, 1, 0))):
        response = api.client.post(
            "/api/import/orders?dryRun=true", json={"orders": rows}, headers={"x-api-key": api.key}
        )
        api.work()
        status = api.status(response.json()["jobId"]).json()
        assert (status["wouldInsert"], status["wouldUpdate"], status["wouldLeaveUnchanged"]) == expected
    assert api.query("SELECT external_order_id, quantity FROM order_lines") == [("O1", 2.0)]


def test_the_staged_files_of_a_replayed_request_are_removed(api: Api) -> None:
    first = accept(api, "suppliers", supplier("A"), **{"idempotency-key": "once"})
    accept(api, "suppliers", supplier("A"), **{"idempotency-key": "once"})
    staged = {p.name.split(".")[0] for p in (api.settings.staging_dir / "acme").iterdir() if p.suffix == ".parquet"}
    assert staged == {first}
    assert JobFiles.of(api.settings.staging_dir, "acme", first).rows.exists()


# --- retention --------------------------------------------------------------------------------------


def test_finished_jobs_past_retention_are_purged_answer_410_and_open_ones_are_kept(api: Api) -> None:
    import json
    from datetime import UTC, datetime, timedelta

    from service.job_store import JobStore
    from service.retention import directory_bytes, purge_expired

    old = accept(
        api, "suppliers", {"suppliers": [{"externalId": f"S{i}"} for i in range(2000)]}, **{"idempotency-key": "k"}
    )
    api.work()
    still_open = accept(api, "suppliers", supplier("OPEN"))  # queued: never purged, however old
    staging = api.settings.staging_dir
    for job_id in (old, still_open):
        path = staging / "acme" / f"{job_id}.json"
        record = json.loads(path.read_text())
        long_ago = (datetime.now(UTC) - timedelta(days=40)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        record["created_at"] = long_ago
        record["completed_at"] = long_ago if record["completed_at"] else None
        path.write_text(json.dumps(record))
    key = next((staging / "acme" / "idempotency").glob("*.json"))
    key.write_text(json.dumps({**json.loads(key.read_text()), "created_at": long_ago}))
    before = directory_bytes(staging)

    report = purge_expired(JobStore(api.connection, api.settings), api.settings)

    assert (report.jobs, report.keys) == (1, 1)
    assert directory_bytes(staging) < before / 4 and report.bytes_freed > 0
    assert sorted(p.name for p in (staging / "acme").glob(f"{old}*")) == [f"{old}.expired"]
    gone = api.status(old)
    assert gone.status_code == 410 and "expired on" in gone.json()["detail"]
    assert api.status(still_open).json()["status"] == "PENDING"
    assert api.query("SELECT count(*) FROM import_jobs WHERE job_id = ?", [old]) == [(1,)]  # lineage stays
    assert [item["jobId"] for item in listing(api)["items"]] == [still_open]
    again = api.post(
        "suppliers", {"suppliers": [{"externalId": f"S{i}"} for i in range(2000)]}, headers={"idempotency-key": "k"}
    )
    assert again.json()["jobId"] not in (old, still_open)  # the key expired with its job: a new import
