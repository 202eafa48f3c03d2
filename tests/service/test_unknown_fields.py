"""Fields the contract does not name are not stored, and never dropped without a word: one
`unknown_field` warning each, in every format; the columns a failed-rows file adds are not unknown."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from service.kinds import KINDS
from service.staging import UploadFormat
from service.staging.from_json import isolate_array
from service.staging.small_json import decode
from service.staging.sql import staging_database
from service.staging.unknown_fields import SAMPLE_ROWS, UnknownField, unknown_keys, unknown_keys_of
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


ORDERS = [  # each body: the orders sent, and the unknown keys with the rows having them
    ([{"externalOrderId": "O1", "channel": "web", "lines": [{"skuId": "A", "price": 9.5}, {"skuId": "B", "price": 1,
      "tax": 0}]}, {"externalOrderId": "O2", "lines": [{"skuId": "A", "price": 2}], "channel": None},
      {"externalOrderId": "O3", "lines": None, "note": "x"}, {"externalOrderId": "O4", "lines": [], "été": 1}],
     [("channel", 2), ("lines[].price", 2), ("lines[].tax", 1), ("note", 1), ("été", 1)]),
    ([{"externalOrderId": "O1", "extra": 1}, 5, None, {"extra": 2}], [("extra", 2)]),
    ([{"externalOrderId": "O1", "lines": [3, {"skuId": "A", "w": 1}]}], [("lines[].w", 1)]),
    ([{"externalOrderId": "O1", "lines": "none", "v": 1}], [("v", 1)]),
    ([{"externalOrderId": f"O{i}", **({"late": 1} if i >= SAMPLE_ROWS - 2 else {})} for i in range(SAMPLE_ROWS + 5)],
     [("late", 2)]),
]  # fmt: skip


@pytest.mark.parametrize(("orders", "expected"), ORDERS)
def test_a_small_json_body_counts_the_unknown_keys_duckdbs_reading_counts(
    orders: list[Any], expected: list[tuple[str, int]], tmp_path: Path
) -> None:
    """Small JSON bodies have their keys counted from msgspec's decoding, others by DuckDB: the same counts
    (a body with rows or lines that are not objects is staged by DuckDB, and counted by it)."""
    contract = KINDS["orders"].contract
    body = tmp_path / "body.json"
    body.write_bytes(json.dumps({"orders": orders}).encode())
    isolate_array(body, contract.array_key)
    with staging_database() as con:
        read = unknown_keys(con, contract, UploadFormat.JSON, body, len(orders))
    looked_at = min(len(orders), SAMPLE_ROWS)
    assert read == [UnknownField(key, rows, looked_at) for key, rows in expected]
    decoded = decode(contract, body.read_bytes())
    if all(isinstance(order, dict) and _objects(order.get("lines") or []) for order in orders):
        assert decoded is not None
    if decoded is not None:
        assert unknown_keys_of(contract, decoded.rows, decoded.lines, len(orders)) == read


def _objects(lines: Any) -> bool:
    return isinstance(lines, list) and all(isinstance(line, dict) for line in lines)


def test_a_key_sent_twice_in_a_row_counts_once_either_way(tmp_path: Path) -> None:
    contract = KINDS["orders"].contract
    body = tmp_path / "body.json"
    body.write_bytes(
        b'{"orders": [{"externalOrderId": "O1", "x": 1, "x": 2, "lines": [{"skuId": "A", "y": 1, "y": 2}]}]}'
    )
    isolate_array(body, contract.array_key)
    with staging_database() as con:
        read = unknown_keys(con, contract, UploadFormat.JSON, body, 1)
    decoded = decode(contract, body.read_bytes())
    assert decoded is not None
    assert (
        unknown_keys_of(contract, decoded.rows, decoded.lines, 1)
        == read
        == [UnknownField("lines[].y", 1, 1), UnknownField("x", 1, 1)]
    )
