"""GET .../failed-rows: the rejected rows back in the format they were sent, in input order, with their
row index and messages; fixed and POSTed back as they are, every row lands."""

from __future__ import annotations

from typing import Any

import pytest

from service.auth import Scope
from tests.conftest import Api
from tests.service.test_formats import ROWS, finished, post
from tests.service.uploads import CONTENT_TYPES, FORMATS, decode, encode, reencode

NUMBERS = ("quantityOnHand", "quantityReserved", "reorderPoint", "quantity", "unitCost")
LINE_FIELDS = ("skuId", "quantity", "unitCost")


def failed_rows(api: Api, job_id: str, upload_format: str | None = None, key: str | None = None) -> Any:
    params = {"format": upload_format} if upload_format else {}
    return api.client.get(
        f"/api/import/status/{job_id}/failed-rows", params=params, headers={"x-api-key": key or api.key}
    )


def fix(values: dict[str, Any], row: int) -> None:
    """What a user does with the messages: a number where a number is wanted, the missing ids filled."""
    for name in NUMBERS:
        if values.get(name) not in (None, ""):
            try:
                good = float(values[name]) > 0 or (name != "quantity" and float(values[name]) == 0)
            except ValueError:
                good = False
            if not good:
                values[name] = "1"
    for name in ("skuId", "supplierId"):
        if name in values and not values[name]:
            values[name] = f"FIXED-{row}"
    if values.get("status") == "bogus":
        values["status"] = "PENDING"


def fix_all(kind: str, rows: list[dict[str, Any]], upload_format: str) -> list[dict[str, Any]]:
    for row in rows:
        if upload_format in ("json", "ndjson"):  # a missing field is no key at all
            names = {"inventory": ["skuId"], "purchase-orders": ["supplierId"]}[kind]
            row.update({name: row.get(name) for name in names})
        if kind == "purchase-orders" and upload_format in ("json", "ndjson"):
            for line in row["lines"]:
                fix(line, row["_row"])
            if not row["lines"]:  # an order without lines: give it one
                row["lines"] = [{"skuId": "A", "quantity": 1, "unitCost": 1}]
        elif kind == "purchase-orders" and not any(row[name] for name in LINE_FIELDS):
            row.update(skuId="A", quantity="1", unitCost="1")
        fix(row, row["_row"])
    return rows


@pytest.mark.parametrize("upload_format", FORMATS)
def test_download_fix_and_send_back_every_row_lands(api: Api, upload_format: str) -> None:
    kinds = ["inventory", "purchase-orders"]
    jobs = {kind: post(api, kind, encode(kind, ROWS[kind], upload_format), upload_format) for kind in kinds}
    statuses = finished(api, jobs)
    resent = {}
    for kind in kinds:
        response = failed_rows(api, jobs[kind])  # in the format sent, by default
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(CONTENT_TYPES[upload_format])
        assert f'.failed.{upload_format}"' in response.headers["content-disposition"]
        rows = decode(kind, response.content, upload_format)
        failed = sorted({e["row"] for e in statuses[kind]["errors"]})
        assert sorted({int(row["_row"]) for row in rows}) == failed
        assert [int(row["_row"]) for row in rows] == sorted(int(row["_row"]) for row in rows)  # input order
        for row in rows:
            messages = [m for m in row["_errors"].split("; ") if m] if upload_format == "csv" else row["_errors"]
            expected = [e["message"] for e in statuses[kind]["errors"] if e["row"] == int(row["_row"])]
            assert set(messages) <= set(expected) and (messages or upload_format in ("csv", "parquet"))
        resent[kind] = post(api, kind, reencode(kind, fix_all(kind, rows, upload_format), upload_format), upload_format)
    for kind, status in finished(api, resent).items():
        assert status["failedCount"] == 0, (kind, status["errors"])
        assert status["rowCount"] == statuses[kind]["failedCount"]
    assert api.query("SELECT count(*) FROM inventory_levels") == [(len(ROWS["inventory"]),)]
    assert api.query("SELECT external_po_number FROM purchase_orders ORDER BY 1") == [(f"PO-{i}",) for i in range(1, 6)]
    assert api.query("SELECT sku_id, quantity, unit_cost FROM purchase_order_lines WHERE external_po_number = 'PO-2'")[
        1
    ] == ("B", 1, 1)


def test_every_message_of_a_row_and_its_lines_comes_back(api: Api) -> None:
    job_id = post(api, "purchase-orders", encode("purchase-orders", ROWS["purchase-orders"], "csv"), "csv")
    status = finished(api, {"job": job_id})["job"]
    as_json = decode("purchase-orders", failed_rows(api, job_id, "json").content, "json")
    for row in as_json:
        assert row["_errors"] == [e["message"] for e in status["errors"] if e["row"] == row["_row"]]
    po2 = next(row for row in as_json if row["externalPoNumber"] == "PO-2")
    assert po2["lines"] == [
        {"skuId": "A", "quantity": "5", "unitCost": "1.25"},
        {"skuId": "B", "quantity": "0", "unitCost": "abc"},
    ]  # as sent: CSV cells are strings
    flat = decode("purchase-orders", failed_rows(api, job_id).content, "csv")
    assert [(r["externalPoNumber"], r["_line"], r["_errors"]) for r in flat if r["_row"] == "1"] == [
        ("PO-2", "0", ""),
        ("PO-2", "1", "lines[1].quantity must be > 0; lines[1].unitCost must be a number"),
    ]


def test_rows_that_could_not_be_read_come_back_as_sent_in_value(api: Api) -> None:
    body = b'{"externalId": "A"}\nnot json at all\n7\n{"externalId": ""}\n'
    job_id = post(api, "suppliers", body, "ndjson")
    finished(api, {"job": job_id})
    rows = decode("suppliers", failed_rows(api, job_id).content, "ndjson")
    assert [(r["_row"], r.get("_value"), r.get("externalId")) for r in rows] == [
        (1, "not json at all", None),
        (2, 7, None),
        (3, None, ""),
    ]
    as_csv = decode("suppliers", failed_rows(api, job_id, "csv").content, "csv")
    assert [(r["_row"], r["_value"], r["externalId"]) for r in as_csv] == [
        ("1", "not json at all", ""),
        ("2", "7", ""),
        ("3", "", ""),
    ]


@pytest.mark.parametrize("upload_format", FORMATS)
def test_no_failed_rows_is_an_empty_file_of_the_format(api: Api, upload_format: str) -> None:
    job_id = post(api, "orders", encode("orders", ROWS["orders"][:1], "json"), "json")
    finished(api, {"job": job_id})
    response = failed_rows(api, job_id, upload_format)
    assert response.status_code == 200
    assert decode("orders", response.content, upload_format) == []
    if upload_format == "csv":
        assert response.text.splitlines() == ["externalOrderId,skuId,quantity,locationId,_row,_line,_errors,_value"]


def test_not_before_the_job_completed_nor_for_a_failed_job(api: Api) -> None:
    job_id = post(api, "suppliers", b"externalId\nA\n", "csv")
    pending = failed_rows(api, job_id)
    assert pending.status_code == 409 and "PENDING" in pending.json()["detail"]
    doomed = post(api, "suppliers", b"externalId\nB\n", "csv")
    (api.settings.staging_dir / "acme" / f"{doomed}.parquet").unlink()  # its staged rows are lost
    api.work()
    assert api.status(doomed).json()["status"] == "FAILED"
    failed = failed_rows(api, doomed)
    assert failed.status_code == 409 and "failed as a whole" in failed.json()["detail"]
    assert failed_rows(api, job_id).status_code == 200


def test_another_organizations_failed_rows_are_404(api: Api) -> None:
    job_id = post(api, "suppliers", b"externalId\n\n", "csv")
    finished(api, {"job": job_id})
    theirs = api.create_key("globex")
    assert failed_rows(api, job_id, key=theirs).status_code == 404
    assert failed_rows(api, "f" * 32).status_code == 404
    assert failed_rows(api, "../../keys.sqlite3").status_code in (400, 404)
    assert failed_rows(api, job_id, "xml").status_code == 400
    writer_only = api.create_key("acme", [Scope.IMPORT_WRITE])
    assert failed_rows(api, job_id, key=writer_only).status_code == 403
    assert not [p for p in api.settings.staging_dir.rglob("*.tmp")]


def test_rows_no_longer_kept_are_404(api: Api) -> None:
    job_id = post(api, "suppliers", b"externalId\n" + b"x" * 300 + b"\n", "csv")
    finished(api, {"job": job_id})
    (api.settings.staging_dir / "acme" / f"{job_id}.parquet").unlink()
    gone = failed_rows(api, job_id)
    assert gone.status_code == 404 and "no longer kept" in gone.json()["detail"]
