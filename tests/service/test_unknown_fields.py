"""Fields the contract does not name are not stored, and never dropped without a word: one
`unknown_field` warning each, in every format; the columns a failed-rows file adds are not unknown."""

from __future__ import annotations

import io
import json
from typing import Any

import polars as pl

from service.staging.unknown_fields import SAMPLE_ROWS
from tests.conftest import Api
from tests.service.test_formats import finished, post


def unknown(status: dict[str, Any]) -> dict[str, str]:
    return {w["field"]: w["message"] for w in status["warnings"] if w["code"] == "unknown_field"}


def test_every_format_warns_once_per_unknown_field_and_stores_the_rest(api: Api) -> None:
    suppliers = [{"externalId": "S1", "name": "Acme Ltd"}, {"externalId": "S2", "name": "Initech", "tier": 2}]
    orders = [{"externalOrderId": "O1", "orderDate": "2026-11-30", "lines": [{"skuId": "A", "quantity": 1,
               "locationId": "L", "price": 9.5}]}]  # fmt: skip
    csv_body = b"externalId,name,_row,_errors\nS3,Globex,4,fixed\n"
    parquet = io.BytesIO()
    pl.DataFrame({"externalId": ["S4"], "contact": ["x@example.com"]}).write_parquet(parquet)
    jobs = {
        "json": post(api, "suppliers", json.dumps({"suppliers": suppliers}).encode(), "json"),
        "ndjson": post(api, "orders", b"".join(json.dumps(o).encode() + b"\n" for o in orders), "ndjson"),
        "csv": post(api, "suppliers", csv_body, "csv"),
        "parquet": post(api, "suppliers", parquet.getvalue(), "parquet"),
        "clean": post(api, "suppliers", json.dumps({"suppliers": [{"externalId": "S5"}]}).encode(), "json"),
    }
    statuses = finished(api, jobs)
    assert unknown(statuses["json"]) == {
        "name": "name is not a field of suppliers: it was not stored",
        "tier": "tier is not a field of suppliers: it was not stored",
    }
    assert set(unknown(statuses["ndjson"])) == {"orderDate", "lines[].price"}
    assert set(unknown(statuses["csv"])) == {"name"}  # _row and _errors: a failed-rows file sent back
    assert set(unknown(statuses["parquet"])) == {"contact"}
    assert statuses["clean"]["warnings"] == []
    for status in statuses.values():
        assert status["status"] == "COMPLETED" and status["failedCount"] == 0
        assert all(w["row"] is None for w in status["warnings"])
    assert api.query("SELECT count(*) FROM suppliers") == [(5,)]


def test_a_large_json_body_is_sampled_and_says_so(api: Api) -> None:
    rows = [{"externalId": f"S{i}", **({"note": "x"} if i % 4 == 0 else {})} for i in range(SAMPLE_ROWS + 500)]
    job = post(api, "suppliers", json.dumps({"suppliers": rows}).encode(), "json")
    status = finished(api, {"job": job})["job"]
    assert unknown(status) == {
        "note": f"note is not a field of suppliers: it was not stored (250 of the first {SAMPLE_ROWS:,} rows have it)"
    }
    warnings = api.client.get(f"/api/import/status/{job}/warnings", headers={"x-api-key": api.key}).json()
    assert warnings["total"] == 1
