"""Seeded mutation fuzz of every body format: whatever the bytes, a 202 or a clear 4xx, never a 5xx.

Valid bodies of each format are mutated (bytes flipped, ranges cut, repeated or truncated, the
Parquet footer's length nudged) with a fixed seed, so a failure replays exactly. Accepted mutants
are then prepared and applied: each ends COMPLETED or FAILED with a reason, and the worker goes on.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.conftest import Api
from tests.service.uploads import CONTENT_TYPES, encode

MUTANTS_PER_FORMAT = 120
ROWS = [
    {"externalOrderId": f"O-{i}", "lines": [{"skuId": f"S{i}", "quantity": i + 1, "locationId": "L"}]} for i in range(6)
]
ANSWERS = {202, 400, 413, 415}


def mutate(body: bytes, chooser: random.Random) -> bytes:
    data = bytearray(body)
    for _ in range(chooser.randint(1, 4)):
        operation = chooser.choice(["flip", "cut", "repeat", "truncate", "insert", "footer"])
        if not data:
            break
        at = chooser.randrange(len(data))
        if operation == "flip":
            data[at] ^= 1 << chooser.randrange(8)
        elif operation == "cut":
            del data[at : at + chooser.randint(1, 16)]
        elif operation == "repeat":
            data[at:at] = data[at : at + chooser.randint(1, 64)]
        elif operation == "truncate":
            del data[at:]
        elif operation == "insert":
            data[at:at] = bytes(chooser.choice(b'{}[]",:\\\n\r\x00\xff\xc3') for _ in range(chooser.randint(1, 4)))
        elif operation == "footer" and len(data) > 8:  # Parquet: the footer length, just before "PAR1"
            position = len(data) - 8
            length = int.from_bytes(data[position : position + 4], "little") + chooser.randint(-5, 5)
            data[position : position + 4] = max(0, length).to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize("upload_format", ["json", "ndjson", "csv", "parquet"])
def test_mutated_bodies_are_202_or_a_clear_4xx_and_every_accepted_one_ends(api: Api, upload_format: str) -> None:
    chooser = random.Random(f"stockyard-{upload_format}")
    body = encode("orders", ROWS, upload_format, nested_parquet=chooser.random() < 0.5)
    accepted: list[str] = []
    answers: dict[int, int] = {}
    for _ in range(MUTANTS_PER_FORMAT):
        mutant = mutate(body, chooser)
        response = api.post("orders", mutant, headers={"content-type": CONTENT_TYPES[upload_format]})
        answers[response.status_code] = answers.get(response.status_code, 0) + 1
        assert response.status_code in ANSWERS, (response.status_code, response.text, mutant[:300])
        if response.status_code == 202:
            accepted.append(response.json()["jobId"])
        else:
            assert response.json()["detail"]  # says what is wrong
    api.work()
    statuses: list[dict[str, Any]] = [api.status(job_id).json() for job_id in accepted]
    assert all(status["status"] in ("COMPLETED", "FAILED") for status in statuses)
    assert answers.get(400, 0) or any(s["failedCount"] for s in statuses)  # it reached refusals or row errors
    for status in statuses:
        if status["status"] == "FAILED":
            assert status["errors"][0]["row"] is None and status["errors"][0]["message"]
