"""Every kind end to end: HTTP in, real Redis and worker, read back from the analysts' DuckDB copy."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from tests.conftest import Api

ENVELOPE = {"jobId", "type", "status", "rowCount", "createdAt", "statusUrl"}
STATUS = {
    "jobId",
    "type",
    "status",
    "rowCount",
    "processedCount",
    "failedCount",
    "errors",
    "warnings",
    "createdAt",
    "startedAt",
    "completedAt",
}


def test_accepts_with_envelope_and_location(api: Api) -> None:
    response = api.post("inventory", {"levels": [{"skuId": "A", "locationId": "L1"}]})
    assert response.status_code == 202
    body = response.json()
    assert set(body) == ENVELOPE
    assert body["status"] == "PENDING" and body["type"] == "inventory" and body["rowCount"] == 1
    assert response.headers["location"] == f"/api/import/status/{body['jobId']}" == body["statusUrl"]
    pending = api.status(body["jobId"]).json()
    assert set(pending) == STATUS
    assert pending["status"] == "PENDING" and pending["completedAt"] is None and pending["startedAt"] is None
    api.work()
    done = api.status(body["jobId"]).json()
    assert done["status"] == "COMPLETED"
    assert done["processedCount"] == 1 and done["failedCount"] == 0
    assert done["startedAt"] is not None and done["completedAt"] is not None


def test_completed_at_is_when_the_rows_were_written(api: Api) -> None:
    """completedAt covers the merge: it is stamped as the rows are written, not when the merge begins."""
    status = api.run("inventory", [{"skuId": "A", "locationId": "L1"}])
    ((updated, completed),) = api.query(
        "SELECT l.updated_at, j.completed_at FROM inventory_levels l JOIN import_jobs j ON j.job_id = l.last_job_id"
    )
    assert updated < completed  # the rows' updated_at is when the merge began
    assert status["completedAt"] == completed.isoformat(timespec="milliseconds") + "Z"
    assert datetime.fromisoformat(status["startedAt"]).replace(tzinfo=None) <= updated


def test_catalog_defaults_name_and_trims(api: Api) -> None:
    status = api.run("catalog", [{"externalId": "  P-1 "}, {"externalId": "P-2", "name": "Widget"}])
    assert status["failedCount"] == 0
    assert api.query("SELECT external_id, name, auto_created FROM products ORDER BY 1") == [
        ("P-1", "P-1", False),
        ("P-2", "Widget", False),
    ]


def test_inventory_defaults_normalizes_and_creates_stubs(api: Api) -> None:
    status = api.run(
        "inventory",
        [
            {"skuId": "S1", "locationId": "WH1", "quantityOnHand": 10, "quantityReserved": "3", "reorderPoint": 2},
            {"skuId": "S2", "locationId": "WH1"},
        ],
    )
    assert status["status"] == "COMPLETED" and status["failedCount"] == 0
    rows = api.query(
        "SELECT organization_id, sku_id, location_id, quantity_on_hand, quantity_reserved, min_quantity,"
        " quantity_available FROM inventory_levels ORDER BY sku_id"
    )
    assert rows == [("acme", "S1", "acme-WH1", 10, 3, 2, 7), ("acme", "S2", "acme-WH1", 0, 0, 0, 0)]
    assert api.query("SELECT external_id, auto_created FROM products ORDER BY 1") == [("S1", True), ("S2", True)]
    assert api.query("SELECT location_id, code, auto_created FROM locations") == [("acme-WH1", "WH1", True)]


def test_suppliers(api: Api) -> None:
    api.run("suppliers", [{"externalId": "SUP-1"}, {"externalId": "SUP-2"}])
    assert api.query("SELECT external_id, auto_created FROM suppliers ORDER BY 1") == [
        ("SUP-1", False),
        ("SUP-2", False),
    ]


PO = {
    "externalPoNumber": "PO-1",
    "supplierId": "SUP-9",
    "destinationLocationId": "DC",
    "lines": [{"skuId": "A", "quantity": 5, "unitCost": 1.25}, {"skuId": "B", "quantity": "2", "unitCost": "0"}],
}


def test_purchase_orders_lines_status_and_stubs(api: Api) -> None:
    status = api.run("purchase-orders", [PO, {**PO, "externalPoNumber": "PO-2", "status": "confirmed"}])
    assert status["failedCount"] == 0
    assert api.query(
        "SELECT external_po_number, supplier_id, destination_location_id, status FROM purchase_orders ORDER BY 1"
    ) == [("PO-1", "SUP-9", "acme-DC", "PENDING"), ("PO-2", "SUP-9", "acme-DC", "CONFIRMED")]
    assert api.query(
        "SELECT line_number, sku_id, quantity, unit_cost FROM purchase_order_lines WHERE external_po_number = 'PO-1'"
        " ORDER BY 1"
    ) == [(1, "A", 5, Decimal("1.2500")), (2, "B", 2, Decimal("0.0000"))]
    assert api.query("SELECT external_id, auto_created FROM suppliers") == [("SUP-9", True)]


def test_purchase_order_reimport_replaces_all_lines(api: Api) -> None:
    api.run("purchase-orders", [PO])
    api.run("purchase-orders", [{**PO, "lines": [{"skuId": "C", "quantity": 1, "unitCost": 9}]}])
    assert api.query("SELECT line_number, sku_id FROM purchase_order_lines") == [(1, "C")]


def test_bad_line_rejects_the_whole_order(api: Api) -> None:
    bad = {**PO, "externalPoNumber": "PO-BAD", "lines": [PO["lines"][0], {"skuId": "B", "quantity": 0, "unitCost": -1}]}
    status = api.run("purchase-orders", [PO, bad])
    assert status["failedCount"] == 1
    assert [(e["row"], e["field"], e["code"]) for e in status["errors"]] == [
        (1, "lines[1].quantity", "invalid_value"),
        (1, "lines[1].unitCost", "invalid_value"),
    ]
    assert api.query("SELECT DISTINCT external_po_number FROM purchase_order_lines") == [("PO-1",)]
    assert api.query("SELECT count(*) FROM purchase_orders") == [(1,)]


def test_orders_lines_numbered_and_locations_normalized(api: Api) -> None:
    order = {
        "externalOrderId": "O-1",
        "lines": [
            {"skuId": "A", "quantity": 1, "locationId": "S1"},
            {"skuId": "B", "quantity": 2.5, "locationId": "S2"},
        ],
    }
    status = api.run("orders", [order, {"externalOrderId": "O-2", "lines": []}, {"externalOrderId": "O-3"}])
    assert [(e["row"], e["field"], e["code"]) for e in status["errors"]] == [
        (1, "lines", "empty_lines"),
        (2, "lines", "required"),
    ]
    assert api.query("SELECT external_order_id FROM orders") == [("O-1",)]
    assert api.query("SELECT line_number, sku_id, quantity, location_id FROM order_lines ORDER BY 1") == [
        (1, "A", 1, "acme-S1"),
        (2, "B", 2.5, "acme-S2"),
    ]


def test_demand_history_buckets_weeks_and_defaults(api: Api) -> None:
    status = api.run(
        "demand-history",
        [
            {"skuId": "A", "locationId": "L", "weekStarting": "2026-11-26", "actualDemand": 3},
            {"skuId": "A", "locationId": "L", "weekStarting": "2026-11-29T23:00:00Z", "actualDemand": 5},
            {"skuId": "A", "locationId": "L", "weekStarting": "2026-12-01", "channel": "web", "forecastedDemand": 7},
            {"skuId": "A", "locationId": "L", "weekStarting": "2026-02-30"},
        ],
    )
    assert [(e["row"], e["code"]) for e in status["errors"]] == [(3, "invalid_date")]
    assert [(w["row"], w["code"]) for w in status["warnings"]] == [(0, "duplicate_key")]
    rows = api.query(
        "SELECT week_starting::VARCHAR, channel, actual_demand, forecasted_demand FROM demand_history ORDER BY 1"
    )
    assert rows == [("2026-11-23", "ALL", 5, 5), ("2026-11-30", "web", 0, 7)]


def test_bad_rows_are_reported_and_every_other_row_lands(api: Api) -> None:
    rows: list[Any] = [
        {"skuId": "OK-1", "locationId": "L"},
        {"skuId": "X", "locationId": "L", "quantityOnHand": "abc"},
        {"skuId": {"nested": True}, "locationId": "", "quantityReserved": -1},
        {"locationId": "L", "quantityOnHand": 1e308 * 10 if False else "1e400"},
        7,
        {"skuId": "OK-2", "locationId": "L", "quantityOnHand": "12.5"},
    ]
    status = api.run("inventory", rows)
    assert status["processedCount"] == 6 and status["failedCount"] == 4
    assert [(e["row"], e["field"], e["code"], e["value"]) for e in status["errors"]] == [
        (1, "quantityOnHand", "invalid_type", "abc"),
        (2, "skuId", "invalid_type", '{"nested":true}'),
        (2, "locationId", "required", ""),
        (2, "quantityReserved", "invalid_value", "-1"),
        (3, "skuId", "required", None),
        (3, "quantityOnHand", "invalid_value", "1e400"),
        (4, None, "invalid_type", "7"),
    ]
    assert all(e["message"] for e in status["errors"])
    assert api.query("SELECT sku_id, quantity_on_hand FROM inventory_levels ORDER BY 1") == [
        ("OK-1", 0),
        ("OK-2", 12.5),
    ]


def test_too_long_identifier(api: Api) -> None:
    status = api.run("suppliers", [{"externalId": "x" * 256}, {"externalId": "y" * 255}])
    assert [(e["row"], e["code"], len(e["value"])) for e in status["errors"]] == [(0, "too_long", 200)]


def test_duplicates_last_wins_with_warning(api: Api) -> None:
    status = api.run(
        "catalog", [{"externalId": "A", "name": "first"}, {"externalId": "B"}, {"externalId": "A", "name": "last"}]
    )
    assert status["failedCount"] == 0 and status["processedCount"] == 3
    assert [(w["row"], w["code"], w["message"]) for w in status["warnings"]] == [
        (0, "duplicate_key", "duplicate externalId: superseded by row 2")
    ]
    assert api.query("SELECT name FROM products WHERE external_id = 'A'") == [("last",)]


def test_reimport_is_idempotent(api: Api) -> None:
    rows = [{"skuId": "A", "locationId": "L", "quantityOnHand": 4}, {"skuId": "B", "locationId": "L"}]
    api.run("inventory", rows)
    snapshot = "SELECT * EXCLUDE (created_at, updated_at, last_job_id) FROM {} ORDER BY ALL"
    first = {t: api.query(snapshot.format(t)) for t in ("inventory_levels", "products", "locations")}
    api.run("inventory", rows)
    assert {t: api.query(snapshot.format(t)) for t in first} == first


def test_an_updated_row_keeps_when_it_was_created(api: Api) -> None:
    lineage = "SELECT sku_id, created_at, updated_at, last_job_id FROM inventory_levels ORDER BY 1"
    first = api.run("inventory", [{"skuId": "A", "locationId": "L"}, {"skuId": "B", "locationId": "L"}])
    (_, a_created, a_updated, _), b = api.query(lineage)
    second = api.run("inventory", [{"skuId": "A", "locationId": "L", "quantityOnHand": 2}])
    (_, a_created_now, a_updated_now, a_job), b_now = api.query(lineage)
    assert (a_created_now, a_job) == (a_created, second["jobId"])  # created once, last written by the second job
    assert a_updated_now > a_updated
    assert b_now == b and b[3] == first["jobId"]  # untouched


def test_catalog_import_completes_a_stub(api: Api) -> None:
    api.run("inventory", [{"skuId": "A", "locationId": "L"}])
    assert api.query("SELECT name, auto_created FROM products") == [("A", True)]
    api.run("catalog", [{"externalId": "A", "name": "Apple"}])
    assert api.query("SELECT name, auto_created FROM products") == [("Apple", False)]


def test_empty_array_completes_with_no_rows(api: Api) -> None:
    status = api.run("orders", [])
    assert status["status"] == "COMPLETED" and status["rowCount"] == 0 and status["processedCount"] == 0


def test_jobs_apply_in_acceptance_order(api: Api) -> None:
    first = api.post("inventory", {"levels": [{"skuId": "A", "locationId": "L", "quantityOnHand": 1}]})
    second = api.post("inventory", {"levels": [{"skuId": "A", "locationId": "L", "quantityOnHand": 2}]})
    assert first.status_code == second.status_code == 202
    api.work()
    assert api.query("SELECT quantity_on_hand, last_job_id FROM inventory_levels") == [(2, second.json()["jobId"])]
    jobs = api.query("SELECT job_id, status FROM import_jobs ORDER BY completed_at")
    assert jobs == [(first.json()["jobId"], "COMPLETED"), (second.json()["jobId"], "COMPLETED")]


def test_errors_are_paged_beyond_the_first_thousand(api: Api) -> None:
    rows = [{"skuId": f"S{i}", "locationId": "L", "quantityOnHand": -1} for i in range(1500)]
    status = api.run("inventory", rows)
    assert status["failedCount"] == 1500 and len(status["errors"]) == 1000
    job_id = status["jobId"]
    seen = []
    offset = 0
    while True:
        page = api.client.get(
            f"/api/import/status/{job_id}/errors",
            params={"offset": offset, "limit": 400},
            headers={"x-api-key": api.key},
        ).json()
        assert page["total"] == 1500
        if not page["items"]:
            break
        seen += [item["row"] for item in page["items"]]
        offset += 400
    assert seen == list(range(1500))


def test_the_status_shows_the_errors_file_as_it_is_now(api: Api) -> None:
    """The status keeps a job's first errors decoded while their file is the same; a file written anew (a job
    prepared again) is read anew."""
    from service.job_files import JobFiles
    from service.prepare import IssueWriter

    status = api.run("inventory", [{"skuId": "S1", "locationId": "L", "quantityOnHand": -1}])
    assert [error["row"] for error in status["errors"]] == [0]
    assert api.status(status["jobId"]).json()["errors"] == status["errors"]  # read again, the same
    files = JobFiles.of(api.settings.staging_dir, "acme", status["jobId"])
    again = pl.read_parquet(files.errors).with_columns(pl.lit("rewritten").alias("message"))
    with IssueWriter(files.errors) as writer:
        writer.write(again.with_columns(pl.lit(0, pl.Int64()).alias("position")))
    assert [error["message"] for error in api.status(status["jobId"]).json()["errors"]] == ["rewritten"]


def test_analysts_holding_the_copy_never_block_imports(api: Api) -> None:
    import duckdb

    api.run("suppliers", [{"externalId": "A"}])
    with duckdb.connect(str(api.settings.analytics_path), read_only=True) as analyst:
        status = api.run("suppliers", [{"externalId": "B"}])
        assert status["status"] == "COMPLETED"
        assert analyst.execute("SELECT count(*) FROM suppliers").fetchall() == [(1,)]  # their snapshot
    assert api.query("SELECT count(*) FROM suppliers") == [(2,)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "body is not valid JSON"),
        (b"[1, 2]", 'expected a JSON object with "levels"'),
        (b'{"rows": []}', 'expected "levels" to be an array, but it is missing'),
        (b'{"levels": {"skuId": "A"}}', 'expected "levels" to be an array'),
        (b'{"levels": [', "body is not valid JSON"),
        (b'{"levels": [{"skuId": "\xff"}]}', "body is not valid UTF-8"),
        (b"", "empty body"),
    ],
    ids=["not-json", "not-object", "missing-array", "not-array", "truncated", "bad-utf8", "empty"],
)
def test_unusable_bodies_are_400(api: Api, body: bytes, message: str) -> None:
    response = api.post("inventory", body)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not list(api.settings.staging_dir.rglob("*.parquet"))


def test_wrong_content_type_is_415(api: Api) -> None:
    response = api.post("inventory", b"<levels/>", headers={"content-type": "application/xml"})
    assert response.status_code == 415 and "application/json" in response.json()["detail"]


def test_unknown_kind_is_404(api: Api) -> None:
    assert api.post("widgets", {"widgets": []}).status_code == 404


def test_body_over_the_limit_is_413(api: Api, settings: Any) -> None:
    from litestar.testing import TestClient

    from service.app import create_app
    from service.settings import Settings

    small = Settings(data_dir=settings.data_dir, redis_url=settings.redis_url, max_body_bytes=1000)
    with TestClient(create_app(small, api.connection)) as client:
        response = client.post(
            "/api/import/inventory",
            content=b'{"levels": [' + b'{"skuId": "A", "locationId": "B"},' * 100 + b"{}]}",
            headers={"x-api-key": api.key, "content-type": "application/json"},
        )
    assert response.status_code == 413


def test_processed_count_grows_while_a_large_job_runs(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation goes in slices; after each, processedCount in Redis says how far the job got."""
    from service.job import JobRecord
    from service.job_store import JobStore
    from service.settings import get_settings

    monkeypatch.setenv("STOCKYARD_GROUP_MAX_ROWS", "2")  # ten rows make a large job, validated in chunks
    monkeypatch.setenv("STOCKYARD_VALIDATION_CHUNK_ROWS", "4")
    get_settings.cache_clear()
    seen: list[int] = []
    save = JobStore.save

    def record_progress(store: JobStore, records: list[JobRecord], durable: bool = True) -> None:
        save(store, records, durable)
        for record in records:
            if record.status == "PROCESSING":  # what a client polling the status would read now
                seen.append(api.status(record.job_id).json()["processedCount"])

    monkeypatch.setattr(JobStore, "save", record_progress)
    status = api.run("suppliers", [{"externalId": f"S{i}"} for i in range(10)])
    assert seen == [0, 4, 8, 8]  # the last: prepared, waiting for its turn to be applied
    assert status["processedCount"] == 10 and status["status"] == "COMPLETED"


def test_long_rows_are_validated_in_smaller_chunks(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk holds about STOCKYARD_VALIDATION_CHUNK_BYTES of the rows' text, however few rows that is."""
    from service.job import JobRecord
    from service.job_store import JobStore
    from service.settings import get_settings

    monkeypatch.setenv("STOCKYARD_GROUP_MAX_ROWS", "2")
    monkeypatch.setenv("STOCKYARD_VALIDATION_CHUNK_ROWS", "4")
    monkeypatch.setenv("STOCKYARD_VALIDATION_CHUNK_BYTES", "600")  # two rows of an id of 250 characters
    get_settings.cache_clear()
    seen: list[int] = []
    save = JobStore.save

    def record_progress(store: JobStore, records: list[JobRecord], durable: bool = True) -> None:
        save(store, records, durable)
        seen.extend(record.processed_count for record in records if record.status == "PROCESSING")

    monkeypatch.setattr(JobStore, "save", record_progress)
    status = api.run("suppliers", [{"externalId": f"{i}" * 250} for i in range(10)])
    assert seen == [0, 2, 4, 6, 8, 8]
    assert status["processedCount"] == 10 and status["status"] == "COMPLETED"
