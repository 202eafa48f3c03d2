"""Hostile and broken input through the HTTP API: a clear 4xx or a row-level error, never a 5xx,
never a lost good row, and identifiers stored exactly as sent (read back from the analysts' copy)."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api
from tests.service.processes import Stockyard, external_redis

GOOD = {"externalId": "GOOD"}


def staged_files(api: Api) -> list[Path]:
    return [path for path in api.settings.staging_dir.rglob("*") if path.is_file()]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"suppliers": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b', "suppliers": []}', "nested too deeply"),
        (b'{"suppliers": [{"externalId": "A"}], "suppliers": [{"externalId": "B"}]}', 'repeats the key "suppliers"'),
        (b'{"meta": 1, "suppliers": [], "meta": 2}', 'repeats the key "meta"'),
        (b'{"suppliers": [{"externalId": NaN}]}', "not valid JSON"),
        (b'{"suppliers": [{"externalId": Infinity}]}', "not valid JSON"),
        (b'{"suppliers": [{"externalId": "A"}]', "not valid JSON"),
        (b'{"suppliers": [{"externalId": "A"}]} trailing', "not valid JSON"),
        (b'\xef\xbb\xbf{"suppliers": []}', "not valid JSON"),
        (b'{"suppliers": [{"externalId": "\xc3\x28"}]}', "not valid UTF-8"),
        (b'{"suppliers": null}', 'expected "suppliers" to be an array'),
        (b'{"suppliers": "[]"}', 'expected "suppliers" to be an array'),
        (b"[]", 'expected a JSON object with "suppliers"'),
        (b"null", 'expected a JSON object with "suppliers"'),
    ],
    ids=[
        "deep-array",
        "deep-sibling",
        "repeated-array-key",
        "repeated-other-key",
        "bare-nan",
        "bare-infinity",
        "truncated",
        "trailing-garbage",
        "byte-order-mark",
        "invalid-utf8",
        "null-array",
        "string-array",
        "top-level-array",
        "top-level-null",
    ],
)
def test_unusable_bodies_are_400_with_the_reason_and_leave_nothing(api: Api, body: bytes, message: str) -> None:
    response = api.post("suppliers", body)
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]
    assert staged_files(api) == []


@pytest.mark.parametrize(
    ("row", "code"),
    [
        ({"externalId": "x" * 10_000_000}, "too_long"),
        ({"externalId": None}, "required"),
        ({"externalId": True}, "invalid_type"),
        ({"externalId": ["A"]}, "invalid_type"),
        ({"externalId": {"id": "A"}}, "invalid_type"),
        ({"externalId": "   "}, "required"),
        ({"externalId": json.loads("[" * 500 + "]" * 500)}, "invalid_type"),
    ],
    ids=["10MB-id", "null-id", "boolean-id", "array-id", "object-id", "blank-id", "500-levels-in-a-field"],
)
def test_bad_values_are_row_errors_and_the_good_row_lands(api: Api, row: dict[str, Any], code: str) -> None:
    status = api.run("suppliers", [row, GOOD])
    assert status["status"] == "COMPLETED"
    assert [(e["row"], e["field"], e["code"]) for e in status["errors"]] == [(0, "externalId", code)]
    assert all(e["value"] is None or len(e["value"]) <= 200 for e in status["errors"])
    assert api.query("SELECT external_id FROM suppliers") == [("GOOD",)]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("1e400", "invalid_value"),
        ('"1e400"', "invalid_value"),
        ('"NaN"', "invalid_value"),
        ('"Infinity"', "invalid_value"),
        ('"-inf"', "invalid_value"),
        ("true", "invalid_type"),
        ("[1]", "invalid_type"),
        ('{"n": 1}', "invalid_type"),
        ('"12abc"', "invalid_type"),
        ("-1", "invalid_value"),
    ],
)
def test_bad_numbers_are_row_errors(api: Api, value: str, code: str) -> None:
    body = '{"levels": [{"skuId": "A", "locationId": "L", "quantityOnHand": %s}, {"skuId": "B", "locationId": "L"}]}'
    response = api.post("inventory", (body % value).encode())
    assert response.status_code == 202, response.text
    api.work()
    status = api.status(response.json()["jobId"]).json()
    assert [(e["row"], e["field"], e["code"]) for e in status["errors"]] == [(0, "quantityOnHand", code)]
    assert api.query("SELECT sku_id FROM inventory_levels") == [("B",)]


def test_elements_that_are_not_objects_are_row_errors_of_their_own(api: Api) -> None:
    status = api.run("suppliers", [1, "x", None, True, [], GOOD])
    assert [(e["row"], e["code"]) for e in status["errors"]] == [(i, "invalid_type") for i in range(5)]
    assert api.query("SELECT external_id FROM suppliers") == [("GOOD",)]


def test_a_null_element_among_objects_is_a_row_error_of_its_own(api: Api) -> None:
    """Alone among objects too: DuckDB's fast reader would take it for an empty object (`required` errors)."""
    status = api.run("suppliers", [{"externalId": "A"}, None, GOOD])
    assert [(e["row"], e["code"], e["message"]) for e in status["errors"]] == [
        (1, "invalid_type", "each row must be a JSON object")
    ]


def test_unknown_fields_are_ignored(api: Api) -> None:
    status = api.run("suppliers", [{"externalId": "A", "organizationId": "globex", "extra": {"deep": [1, 2]}}])
    assert status["failedCount"] == 0
    assert api.query("SELECT organization_id, external_id FROM suppliers") == [("acme", "A")]


def test_a_repeated_key_inside_a_row_or_line_keeps_the_last_value(api: Api) -> None:
    """As JSON.parse and Python's json do; the top level refuses repeated keys instead (one array would be lost)."""
    body = (
        b'{"purchaseOrders": [{"externalPoNumber": "PO-1", "externalPoNumber": "PO-2", "supplierId": "S",'
        b' "destinationLocationId": "D", "lines": [{"skuId": "A", "quantity": 0, "quantity": 3, "unitCost": 1}]}]}'
    )
    response = api.post("purchase-orders", body)
    assert response.status_code == 202
    api.work()
    assert api.status(response.json()["jobId"]).json()["failedCount"] == 0
    assert api.query("SELECT external_po_number, quantity FROM purchase_order_lines") == [("PO-2", 3)]


IDENTIFIERS = [
    "x'); DROP TABLE suppliers; --",
    "Robert'); DELETE FROM import_jobs WHERE ('1' = '1",
    'double "quotes" and \\ backslash',
    "new\nline\rand\ttab",
    "emoji 🦄 and accents é, RTL \u202e override",
    "nul \u0000 byte",
    "$org $job ? :name %s {0}",
    "../../etc/passwd",
]


def test_identifiers_that_look_like_sql_or_carry_odd_characters_are_stored_literally(api: Api) -> None:
    status = api.run("suppliers", [{"externalId": identifier} for identifier in IDENTIFIERS])
    assert status["failedCount"] == 0
    assert sorted(row[0] for row in api.query("SELECT external_id FROM suppliers")) == sorted(IDENTIFIERS)
    status = api.run("inventory", [{"skuId": identifier, "locationId": identifier} for identifier in IDENTIFIERS])
    assert status["failedCount"] == 0
    stored = api.query("SELECT sku_id, location_id FROM inventory_levels")
    assert sorted(stored) == sorted((identifier, f"acme-{identifier}") for identifier in IDENTIFIERS)
    assert api.query("SELECT count(*) FROM import_jobs") == [(2,)]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/xml"]
)
def test_a_wrong_content_type_is_415(api: Api, content_type: str) -> None:
    response = api.post("suppliers", b'{"suppliers": []}', headers={"content-type": content_type})
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


def test_json_content_types_are_accepted(api: Api) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.acme+json", "text/json"):
        response = api.post("suppliers", b'{"suppliers": []}', headers={"content-type": content_type})
        assert response.status_code == 202, content_type


# --- over the limit, on a real socket: 413 without the body being read whole -----------------------

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def small_limit_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stockyard]:
    root = tmp_path_factory.mktemp("small-limit")
    with external_redis(root / "redis") as server:
        stockyard = Stockyard(root / "stockyard", redis_url=server.url)
        try:
            stockyard.api(env=stockyard.environment(STOCKYARD_MAX_BODY_BYTES=str(LIMIT)))
            yield stockyard
        finally:
            stockyard.cleanup()


def send_raw(stockyard: Stockyard, headers: str, chunks: Iterator[bytes], offered: int) -> tuple[bytes, int]:
    """Send until the server answers (or `offered` bytes went out); return its answer and the bytes sent."""
    request = (
        f"POST /api/import/suppliers HTTP/1.1\r\nHost: test\r\nx-api-key: {stockyard.key}\r\n"
        f"content-type: application/json\r\n{headers}\r\n"
    )
    with socket.create_connection(("127.0.0.1", stockyard.port), timeout=10) as connection:
        connection.sendall(request.encode())
        connection.setblocking(False)
        sent = 0
        for chunk in chunks:
            readable, _, _ = select.select([connection], [connection], [], 5)
            if readable or sent >= offered:
                break
            try:
                sent += connection.send(chunk)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        connection.setblocking(True)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = connection.recv(65536)
            if not data:
                break
            answer += data
        return answer, sent


def test_413_at_once_when_content_length_is_over_the_limit(small_limit_api: Stockyard) -> None:
    started = time.monotonic()
    spaces = iter(lambda: b" " * 65536, b"")
    answer, sent = send_raw(small_limit_api, "Content-Length: 1000000000000\r\n", spaces, 10**12)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert time.monotonic() - started < 5 and sent < 64 * 2**20


def test_413_while_streaming_a_chunked_body_without_content_length(small_limit_api: Stockyard) -> None:
    def chunked() -> Iterator[bytes]:
        start = b'{"suppliers": ['
        yield b"%X\r\n%s\r\n" % (len(start), start)
        while True:
            yield b"10000\r\n" + b" " * 65536 + b"\r\n"

    offered = 256 * 2**20
    answer, sent = send_raw(small_limit_api, "Transfer-Encoding: chunked\r\n", chunked(), offered)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert sent < offered / 4  # answered long before the body was all sent, let alone read
    assert [p for p in (small_limit_api.data_dir / "staging").rglob("*") if p.is_file()] == []


def test_a_body_cut_short_leaves_nothing_and_no_server_error(small_limit_api: Stockyard) -> None:
    request = (
        f"POST /api/import/suppliers HTTP/1.1\r\nHost: test\r\nx-api-key: {small_limit_api.key}\r\n"
        'content-type: application/json\r\nContent-Length: 5000\r\n\r\n{"suppliers": [{"externalId": "A"'
    )
    with socket.create_connection(("127.0.0.1", small_limit_api.port), timeout=10) as connection:
        connection.sendall(request.encode())
        connection.shutdown(socket.SHUT_WR)
        answer = connection.recv(65536)
    assert not answer.startswith(b"HTTP/1.1 5")
    time.sleep(0.3)
    assert [p for p in (small_limit_api.data_dir / "staging").rglob("*") if p.is_file()] == []
    log = small_limit_api.processes[0].output()
    assert "Traceback" not in log and " 500" not in log, log
    assert small_limit_api.post("suppliers", {"suppliers": [GOOD]}).status_code == 202  # still serving
