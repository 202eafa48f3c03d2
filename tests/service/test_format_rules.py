"""Rules that once differed by format (issue 14, finding 8), and inputs that once gave a 500 (finding 6).

One identifier is one key whatever format it came in; one instant lands in one week; a lone surrogate
is a row error; a Parquet column named like DuckDB's own options is data; a failed-rows CSV never
hands a spreadsheet a formula, and goes back as it came.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import Api
from tests.service.test_formats import finished, post


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def test_a_number_identifier_keeps_its_text_as_sent_in_every_format(api: Api) -> None:
    """`1.50`, `1e2`, `-0` and a 23-digit number are the keys they were sent as, in JSON, NDJSON and CSV."""
    sent = ["1.50", "1e2", "-0", "12345678901234567890123", "12345678901234567.5"]
    json_body = ('{"products": [' + ", ".join(f'{{"externalId": {text}}}' for text in sent) + "]}").encode()
    ndjson_body = "\n".join(f'{{"externalId": {text}}}' for text in sent).encode()
    csv_body = ("externalId\n" + "\n".join(sent) + "\n").encode()
    keys = {name: api.create_key(name) for name in ("json", "ndjson", "csv")}
    jobs = {
        name: post(api, "catalog", body, name, key=keys[name])
        for name, body in (("json", json_body), ("ndjson", ndjson_body), ("csv", csv_body))
    }
    finished(api, jobs, keys)
    for organization in keys:
        stored = api.query("SELECT external_id FROM products WHERE organization_id = ? ORDER BY 1", [organization])
        assert stored == sorted((text,) for text in sent), organization


def test_an_order_line_identifier_sent_as_a_number_keeps_its_text(api: Api) -> None:
    body = b'{"orders": [{"externalOrderId": 7.10, "lines": [{"skuId": 2.50, "quantity": 1.50, "locationId": 1e1}]}]}'
    finished(api, {"job": post(api, "orders", body, "json")})
    assert api.query("SELECT external_order_id FROM orders") == [("7.10",)]
    assert api.query("SELECT sku_id, quantity, location_id FROM order_lines") == [("2.50", 1.5, "acme-1e1")]


def test_an_instant_lands_in_one_week_whatever_the_format(api: Api) -> None:
    """2027-01-04T01:00+05:00 is 2027-01-03T20:00Z: the week of Monday 2026-12-28, as a TIMESTAMPTZ is."""
    instant = "2027-01-04T01:00+05:00"
    json_body = f'{{"records": [{{"skuId": "S", "locationId": "L", "weekStarting": "{instant}"}}]}}'.encode()
    csv_body = f"skuId,locationId,weekStarting\nS,L,{instant}\n".encode()
    table = pa.table(
        {
            "skuId": ["S"],
            "locationId": ["L"],
            "weekStarting": pa.array([datetime(2027, 1, 3, 20, tzinfo=UTC)], pa.timestamp("us", tz="Asia/Karachi")),
        }
    )
    naive = b'{"records": [{"skuId": "S", "locationId": "L", "weekStarting": "2027-01-04T01:00:00"}]}'
    keys = {name: api.create_key(name) for name in ("json", "csv", "parquet", "naive")}
    jobs = {
        "json": post(api, "demand-history", json_body, "json", key=keys["json"]),
        "csv": post(api, "demand-history", csv_body, "csv", key=keys["csv"]),
        "parquet": post(api, "demand-history", parquet(table), "parquet", key=keys["parquet"]),
        "naive": post(api, "demand-history", naive, "json", key=keys["naive"]),
    }
    finished(api, jobs, keys)
    weeks = dict(api.query("SELECT organization_id, week_starting::VARCHAR FROM demand_history"))
    assert weeks == {"json": "2026-12-28", "csv": "2026-12-28", "parquet": "2026-12-28", "naive": "2027-01-04"}


def test_a_lone_surrogate_is_a_row_error_of_its_row_not_a_400(api: Api) -> None:
    body = (
        b'{"suppliers": [{"externalId": "A\\ud800"}, {"externalId": "\\ud83d\\ude00"},'
        b' {"externalId": "x\\\\ud800"}, {"externalId": "\\udc00z"}]}'
    )
    status = finished(api, {"job": post(api, "suppliers", body, "json")})["job"]
    assert [(e["row"], e["field"], e["code"]) for e in status["errors"]] == [
        (0, "externalId", "invalid_value"),
        (3, "externalId", "invalid_value"),
    ]
    assert "lone surrogate" in status["errors"][0]["message"]
    assert api.query("SELECT external_id FROM suppliers ORDER BY 1") == [("x\\ud800",), ("😀",)]


def test_a_parquet_column_named_as_a_reader_option_is_data(api: Api) -> None:
    table = pa.table({"externalId": ["A", "B"], "file_row_number": [7, 8], "ordinality": [1, 2], "__position": [0, 0]})
    finished(api, {"job": post(api, "suppliers", parquet(table), "parquet")})
    assert api.query("SELECT external_id FROM suppliers ORDER BY 1") == [("A",), ("B",)]


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"suppliers": [], "\x9e": 1}', "application/json", "not valid UTF-8"),
        (b",".join(f"c{i}".encode() for i in range(20_000)) + b",externalId\n", "text/csv", "20,001 columns"),
    ],
    ids=["invalid-utf8-top-level-key", "csv-20k-columns"],
)
def test_bodies_that_once_gave_a_500_are_400(api: Api, body: bytes, content_type: str, message: str) -> None:
    response = api.post("suppliers", body, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]


def test_a_parquet_file_with_too_many_columns_is_400(api: Api) -> None:
    table = pa.table({"externalId": ["A"], **{f"c{i}": [i] for i in range(10_001)}})
    response = api.post("suppliers", parquet(table), headers={"content-type": "application/vnd.apache.parquet"})
    assert response.status_code == 400 and "10,002 columns" in response.json()["detail"]


def test_an_offset_beyond_any_job_is_400_not_500(api: Api) -> None:
    job_id = api.post("suppliers", {"suppliers": [{"externalId": "A"}]}).json()["jobId"]
    api.work()
    response = api.client.get(
        f"/api/import/status/{job_id}/errors?offset=9223372036854775808", headers={"x-api-key": api.key}
    )
    assert response.status_code == 400, response.text


FORMULAS = ["=cmd|' /C calc'!A0", "@SUM(1+1)", "+1+1", "-2+3", "'=quoted already", "\tTAB"]


def test_failed_rows_csv_never_hands_a_spreadsheet_a_formula_and_goes_back_as_it_came(api: Api) -> None:
    rows = "\n".join(f'"{text}",L,-1' for text in FORMULAS)  # quantityOnHand -1: every row fails
    body = f"skuId,locationId,quantityOnHand\n{rows}\n".encode()
    job = post(api, "inventory", body, "csv")
    finished(api, {"job": job})
    response = api.client.get(f"/api/import/status/{job}/failed-rows", headers={"x-api-key": api.key})
    assert response.status_code == 200
    exported = [record["skuId"] for record in csv.DictReader(io.StringIO(response.text))]
    assert exported == ["'" + text for text in FORMULAS]  # shown as text, never run
    fixed = response.content.replace(b",'-1,", b",1,")  # a negative number is defused too: '-1
    finished(api, {"again": post(api, "inventory", fixed, "csv")})
    stored = api.query("SELECT sku_id FROM inventory_levels ORDER BY 1")
    assert stored == sorted((text.strip(),) for text in FORMULAS)  # as first sent (identifiers are trimmed)


def test_the_stale_analysts_wal_is_not_a_problem_for_readers(api: Api) -> None:
    """An analyst who opened the copy read-write and was killed leaves a WAL: the next publish removes it."""
    api.run("suppliers", [{"externalId": "A"}])
    wal = api.settings.analytics_path.with_name(api.settings.analytics_path.name + ".wal")
    wal.write_bytes(b"\x00" * 1024)
    status: dict[str, Any] = api.run("suppliers", [{"externalId": "B"}])
    assert status["status"] == "COMPLETED"
    assert api.query("SELECT external_id FROM suppliers ORDER BY 1") == [("A",), ("B",)]
