"""NDJSON, CSV and Parquet (and gzip) on the six import endpoints: the same rows, row indices, errors,
warnings and warehouse as the JSON equivalent; a malformed line is a row error, never a 400."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from litestar.testing import TestClient

from service.app import create_app
from service.settings import Settings, get_settings
from tests.conftest import Api
from tests.service.uploads import CONTENT_TYPES, FORMATS, encode, gzipped, snapshot

PO_LINE = {"skuId": "A", "quantity": 5, "unitCost": "1.25"}
ROWS: dict[str, list[dict[str, Any]]] = {
    "catalog": [
        {"externalId": "P-1"},
        {"externalId": " P-2 ", "name": "Widget, large"},
        {"name": "no id"},
        {"externalId": "x" * 256},
        {"externalId": "P-1", "name": 'The "first" one'},
    ],
    "inventory": [
        {"skuId": "S1", "locationId": "WH1", "quantityOnHand": 10, "quantityReserved": "3", "reorderPoint": 2},
        {"skuId": "S2", "locationId": "WH1", "quantityOnHand": "abc"},
        {"skuId": "S3", "locationId": "WH1", "quantityReserved": -1, "reorderPoint": 1.5},
        {"locationId": "WH2"},
        {"skuId": "S4", "locationId": "WH2", "quantityOnHand": "12.5"},
    ],
    "suppliers": [{"externalId": "SUP-1"}, {"externalId": "y" * 300}, {"externalId": "SUP-2"}],
    "purchase-orders": [
        {"externalPoNumber": "PO-1", "supplierId": "S", "destinationLocationId": "DC", "lines": [PO_LINE, PO_LINE]},
        {
            "externalPoNumber": "PO-2",
            "supplierId": "S",
            "destinationLocationId": "DC",
            "status": "confirmed",
            "lines": [PO_LINE, {"skuId": "B", "quantity": 0, "unitCost": "abc"}],
        },
        {"externalPoNumber": "PO-3", "destinationLocationId": "DC", "status": "bogus", "lines": [PO_LINE]},
        {"externalPoNumber": "PO-4", "supplierId": "S", "destinationLocationId": "DC", "lines": []},
        {"externalPoNumber": "PO-5", "supplierId": "T", "destinationLocationId": "DC", "lines": [PO_LINE]},
    ],
    "orders": [
        {"externalOrderId": "O-1", "lines": [{"skuId": "A", "quantity": 1, "locationId": "S1"}]},
        {"externalOrderId": "O-2", "lines": [{"skuId": "B", "quantity": "-1", "locationId": "S1"}]},
        {
            "externalOrderId": "O-3",
            "lines": [{"skuId": "A", "quantity": 2.5, "locationId": "S1"}, {"skuId": "C", "quantity": 1}],
        },
        {"externalOrderId": "O-4", "lines": [{"skuId": "B", "quantity": 3, "locationId": "S2"}] * 3},
    ],
    "demand-history": [
        {"skuId": "A", "locationId": "L", "weekStarting": "2026-11-26", "actualDemand": 3},
        {"skuId": "A", "locationId": "L", "weekStarting": "2026-11-29T23:00:00Z", "actualDemand": 5},
        {"skuId": "A", "locationId": "L", "weekStarting": "2026-12-01", "channel": "web", "forecastedDemand": 7},
        {"skuId": "A", "locationId": "L", "weekStarting": "2026-02-30"},
        {"skuId": "B", "locationId": "L", "weekStarting": "2026-12-01", "actualDemand": "many"},
    ],
}


def issues(status: dict[str, Any], kind: str = "errors") -> list[tuple[Any, ...]]:
    return [(e["row"], e["field"], e["code"], e["value"]) for e in status[kind]]


def post(api: Api, kind: str, body: bytes, upload_format: str, key: str | None = None, **headers: str) -> str:
    response = api.post(kind, body, key=key, headers={"content-type": CONTENT_TYPES[upload_format], **headers})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["jobId"]
    return job_id


def finished(api: Api, job_ids: dict[str, str], keys: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    api.work()
    statuses = {}
    for name, job_id in job_ids.items():
        status = api.status(job_id, key=(keys or {}).get(name)).json()
        assert status["status"] == "COMPLETED", status
        statuses[name] = status
    return statuses


@pytest.mark.parametrize("kind", list(ROWS))
def test_each_format_gives_what_json_gives(api: Api, kind: str) -> None:
    """One organization per format, so that each lands on its own and the warehouses can be compared."""
    keys = {name: api.create_key(name) for name in FORMATS}
    jobs = {name: post(api, kind, encode(kind, ROWS[kind], name), name, key=keys[name]) for name in FORMATS}
    statuses = finished(api, jobs, keys)
    expected = statuses["json"]
    assert expected["failedCount"] > 0 and expected["processedCount"] == len(ROWS[kind])
    for name in FORMATS[1:]:
        status = statuses[name]
        assert (status["rowCount"], status["failedCount"]) == (expected["rowCount"], expected["failedCount"]), name
        assert issues(status) == issues(expected), name
        assert [e["message"] for e in status["errors"]] == [e["message"] for e in expected["errors"]], name
        assert issues(status, "warnings") == issues(expected, "warnings"), name
    warehouse = {name: snapshot(api.settings.analytics_path, name) for name in FORMATS}
    assert any(warehouse["json"].values())
    for name in FORMATS[1:]:
        assert warehouse[name] == warehouse["json"], name


@pytest.mark.parametrize("upload_format", FORMATS)
def test_gzip_bodies_stage_as_the_plain_ones(api: Api, upload_format: str) -> None:
    kind = "purchase-orders"
    body = encode(kind, ROWS[kind], upload_format)
    jobs = {
        "plain": post(api, kind, body, upload_format),
        "gzip": post(api, kind, gzipped(body), upload_format, **{"content-encoding": "gzip"}),
        # two gzip members, as `cat a.gz b.gz` makes: one stream
        "members": post(
            api, kind, gzipped(body[:1000]) + gzipped(body[1000:]), upload_format, **{"content-encoding": "gzip"}
        ),
    }
    statuses = finished(api, jobs)
    for name in ("gzip", "members"):
        assert issues(statuses[name]) == issues(statuses["plain"]), name
        assert statuses[name]["rowCount"] == statuses["plain"]["rowCount"] == len(ROWS[kind])


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"\x1f\x8b\x08\x00garbage", 400, "body is not valid gzip"),
        (gzipped(b'{"externalId": "A"}\n' * 100)[:-12], 400, "cut short"),
        (gzipped(b"{}") + b"trailing", 400, "body is not valid gzip"),
        (gzipped(b'{"externalId": "AAAAAAAAAA"}\n' * 2000), 413, "uncompressed body is larger"),
    ],
    ids=["corrupt", "truncated", "trailing-garbage", "bomb"],
)
def test_bad_gzip_is_400_and_too_much_once_inflated_is_413(
    api: Api, settings: Settings, body: bytes, status: int, message: str
) -> None:
    small = Settings(data_dir=settings.data_dir, redis_url=settings.redis_url, max_body_bytes=20_000)
    with TestClient(create_app(small, api.connection)) as client:
        response = client.post(
            "/api/import/suppliers",
            content=body,
            headers={"x-api-key": api.key, "content-type": CONTENT_TYPES["ndjson"], "content-encoding": "gzip"},
        )
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert not [p for p in api.settings.staging_dir.rglob("*") if p.is_file()]


def test_unknown_encodings_and_media_types_are_415_naming_what_is_accepted(api: Api) -> None:
    encoded = api.post("suppliers", b"{}", headers={"content-encoding": "br"})
    assert encoded.status_code == 415 and "gzip" in encoded.json()["detail"]
    typed = api.post("suppliers", b"x", headers={"content-type": "application/xml"})
    assert typed.status_code == 415
    assert all(media_type in typed.json()["detail"] for media_type in CONTENT_TYPES.values())
    for alias, upload_format in [("application/jsonl", "ndjson"), ("application/x-parquet", "parquet")]:
        body = encode("suppliers", [{"externalId": "A"}], upload_format)
        assert api.post("suppliers", body, headers={"content-type": alias}).status_code == 202, alias


def test_malformed_ndjson_lines_are_row_errors_and_every_good_line_lands(api: Api) -> None:
    body = (
        b'\xef\xbb\xbf{"externalId": "A"}\r\n'  # 0: a byte-order mark and CR LF are fine
        b"\n"  # 1: blank lines are skipped, their number kept
        b'{"externalId": "B"\n'  # 2: not JSON
        b"   \t \n"  # 3: blank
        b'{"externalId": "\xff"}\n'  # 4: not UTF-8
        b"[1, 2]\n"  # 5: not an object
        b'{"externalId": "C", "externalId": "D"}\n'  # 6: the last of a repeated key wins
        b'{"externalId": "bad\x01"}\n'  # 7: a raw control character
        b'{"externalId": "E"}'  # 8: no newline at the end
    )
    job_id = post(api, "suppliers", body, "ndjson")
    status = finished(api, {"job": job_id})["job"]
    assert status["rowCount"] == 7 and status["failedCount"] == 4
    assert [(e["row"], e["field"], e["code"]) for e in status["errors"]] == [
        (2, None, "invalid_type"),
        (4, None, "invalid_type"),
        (5, None, "invalid_type"),
        (7, None, "invalid_type"),
    ]
    assert [e["value"] for e in status["errors"]][:1] + [e["value"] for e in status["errors"]][2:3] == [
        '{"externalId": "B"',
        "[1, 2]",
    ]
    assert sorted(row[0] for row in api.query("SELECT external_id FROM suppliers")) == ["A", "D", "E"]


def test_malformed_csv_records_are_row_errors_and_every_good_record_lands(api: Api) -> None:
    body = (
        b"\xef\xbb\xbfskuId,locationId,quantityOnHand,note\r\n"
        b"A,L,1,plain\r\n"  # 0
        b"B,L,2\r\n"  # 1: a cell short
        b"\r\n"  # blank: skipped, not counted
        b'C,L,3,"quoted, with ""quotes"" and a\r\nnewline"\r\n'  # 2
        b"D,L,4,x,y\r\n"  # 3: a cell too many
        b"E,L,\xff,x\r\n"  # 4: not UTF-8
        b"F,L,,x\r\n"  # 5: empty cell = missing: the default
        b"G,L,-1,x\r\n"  # 6: a bad value, as in JSON
        b'H,L,7,"never closed\r\nI,L,8,x\r\n'  # 7: an open quote runs to the end (so I is in it)
    )
    job_id = post(api, "inventory", body, "csv")
    status = finished(api, {"job": job_id})["job"]
    assert status["rowCount"] == 8
    assert [(e["row"], e["field"], e["code"]) for e in status["errors"]] == [
        (1, None, "invalid_type"),
        (3, None, "invalid_type"),
        (4, None, "invalid_type"),
        (6, "quantityOnHand", "invalid_value"),
        (7, None, "invalid_type"),
    ]
    assert status["errors"][0]["value"] == "B,L,2"
    assert api.query("SELECT sku_id, quantity_on_hand FROM inventory_levels ORDER BY 1") == [
        ("A", 1),
        ("C", 3),
        ("F", 0),
    ]


def test_a_malformed_line_of_an_order_rejects_that_order_whole(api: Api) -> None:
    body = (
        b"externalOrderId,skuId,quantity,locationId\n"
        b"O-1,A,1,S\n"
        b"O-2,A,1,S\n"
        b"O-1,B,2,S,extra\n"  # the second line of O-1 cannot be read: O-1 is rejected whole
        b"O-3,A,1\n"  # O-3's only line cannot be read: O-3 is one unreadable row
        b"O-2,B,2,S\n"
    )
    job_id = post(api, "orders", body, "csv")
    status = finished(api, {"job": job_id})["job"]
    assert status["rowCount"] == 3
    assert [(e["row"], e["field"], e["code"], e["value"]) for e in status["errors"]] == [
        (0, "lines[1]", "invalid_type", "O-1,B,2,S,extra"),
        (2, None, "invalid_type", "O-3,A,1"),
    ]
    assert api.query("SELECT external_order_id, line_number, sku_id FROM order_lines ORDER BY ALL") == [
        ("O-2", 1, "A"),
        ("O-2", 2, "B"),
    ]


def test_csv_with_semicolons_and_tabs_and_repeated_or_unknown_columns(api: Api) -> None:
    jobs = {
        "semicolon": post(api, "suppliers", b"externalId;comment\nA;x\nB;y\n", "csv"),
        "tab": post(api, "suppliers", b"externalId\tcomment\nC\tx\n", "csv"),
        "repeated": post(api, "suppliers", b"externalId,externalId,other\nignored,D,1\n", "csv"),
    }
    statuses = finished(api, jobs)
    assert all(s["failedCount"] == 0 for s in statuses.values())
    assert sorted(row[0] for row in api.query("SELECT external_id FROM suppliers")) == ["A", "B", "C", "D"]


def test_parquet_typed_columns_and_flat_orders(api: Api) -> None:
    import datetime
    import decimal
    import io

    import pyarrow.parquet as pq

    def parquet(table: pa.Table) -> bytes:
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return buffer.getvalue()

    demand = pa.table(
        {
            "skuId": ["A", "B", "C"],
            "locationId": [1, 2, 3],  # a number as an identifier, as JSON allows
            "weekStarting": [datetime.date(2026, 11, 26), datetime.date(2026, 11, 30), None],
            "actualDemand": [3.0, float("nan"), 1.0],
            "forecastedDemand": pa.array([decimal.Decimal("7.50"), None, None], pa.decimal128(9, 2)),
        }
    )
    flat_orders = pa.table(
        {
            "externalOrderId": ["O-1", "O-2", "O-1"],
            "skuId": ["A", "B", "C"],
            "quantity": [1, 2, 3],
            "locationId": ["S", "S", "S"],
        }
    )
    jobs = {
        "demand": post(api, "demand-history", parquet(demand), "parquet"),
        "orders": post(api, "orders", parquet(flat_orders), "parquet"),
    }
    statuses = finished(api, jobs)
    assert [(e["row"], e["field"], e["code"]) for e in statuses["demand"]["errors"]] == [
        (1, "actualDemand", "invalid_value"),
        (2, "weekStarting", "required"),
    ]
    assert api.query("SELECT sku_id, location_id, actual_demand, forecasted_demand FROM demand_history") == [
        ("A", "acme-1", 3, 7.5)
    ]
    assert statuses["orders"]["rowCount"] == 2 and statuses["orders"]["failedCount"] == 0
    assert api.query("SELECT external_order_id, line_number, sku_id FROM order_lines ORDER BY ALL") == [
        ("O-1", 1, "A"),
        ("O-1", 2, "C"),
        ("O-2", 1, "B"),
    ]


@pytest.mark.parametrize(
    ("upload_format", "body", "message"),
    [
        ("csv", b"", "expected a CSV header line"),
        ("csv", b"title,comment\nA,B\n", "names none of the fields of catalog"),
        ("csv", b"externalId,\xff\nA,B\n", "header line is not valid UTF-8"),
        ("parquet", b"PAR1 not really", "not a valid Parquet file"),
        (
            "parquet",
            encode("orders", ROWS["orders"], "parquet", nested_parquet=False),
            "none of the columns of catalog",
        ),
    ],
    ids=["csv-empty", "csv-no-known-column", "csv-header-not-utf8", "parquet-garbage", "parquet-other-kind"],
)
def test_files_that_cannot_be_read_at_all_are_400(api: Api, upload_format: str, body: bytes, message: str) -> None:
    response = api.post("catalog", body, headers={"content-type": CONTENT_TYPES[upload_format]})
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]
    assert str(api.settings.data_dir) not in response.text
    assert not [p for p in api.settings.staging_dir.rglob("*") if p.is_file()]


def test_an_empty_ndjson_body_is_an_empty_import(api: Api) -> None:
    job_id = post(api, "orders", b"\n\n", "ndjson")
    assert finished(api, {"job": job_id})["job"]["rowCount"] == 0


def test_ndjson_rows_keep_their_lines_beyond_a_validation_chunk(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blank lines leave gaps in NDJSON row numbers: lines must still follow their order across chunks."""
    monkeypatch.setenv("STOCKYARD_GROUP_MAX_ROWS", "2")  # seven orders make a large job, validated in chunks
    monkeypatch.setenv("STOCKYARD_VALIDATION_CHUNK_ROWS", "3")
    get_settings.cache_clear()
    orders = [
        {"externalOrderId": f"O-{i}", "lines": [{"skuId": "A", "quantity": 1, "locationId": "S"}]} for i in range(7)
    ]
    body = b"\n\n".join(encode("orders", [order], "ndjson") for order in orders)
    job_id = post(api, "orders", body, "ndjson")
    status = finished(api, {"job": job_id})["job"]
    assert status["failedCount"] == 0, status["errors"]
    assert api.query("SELECT count(*) FROM order_lines") == [(7,)]


def test_the_openapi_document_lists_every_format(api: Api) -> None:
    paths = api.client.get("/schema/openapi.json").json()["paths"]
    for kind in ROWS:
        content = paths[f"/api/import/{kind}"]["post"]["requestBody"]["content"]
        assert set(content) == set(CONTENT_TYPES.values()), kind
    assert "/api/import/status/{job_id}/failed-rows" in paths
