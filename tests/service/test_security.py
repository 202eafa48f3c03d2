"""Tenant security: crafted job ids, another organization's jobs, unguessable ids, keys never shown again."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from service.auth import KeyStore, Scope
from tests.conftest import Api
from tests.service.processes import REPOSITORY, Stockyard, external_redis

STATUS_PATHS = ["/api/import/status/{}", "/api/import/status/{}/errors", "/api/import/status/{}/warnings"]

CRAFTED = [
    "../../keys.sqlite3",
    "..%2F..%2Fkeys.sqlite3",
    "%2e%2e%2f%2e%2e%2fwarehouse.duckdb",
    "..",
    ".",
    "%00",
    "0" * 31 + "%00",
    "0" * 32 + ".json",
    "0" * 32 + "/../../globex",
    "A" * 32,
    "g" * 32,
    "0" * 33,
    "x" * 10_000,
    "%F0%9F%A6%84",
    "'; DROP TABLE import_jobs; --",
]


@pytest.mark.parametrize("job_id", CRAFTED)
def test_crafted_job_ids_are_404_never_5xx(api: Api, job_id: str) -> None:
    for path in STATUS_PATHS:
        response = api.client.get(path.format(job_id), headers={"x-api-key": api.key})
        assert response.status_code in (400, 404), (path, response.status_code, response.text)
    assert not (api.settings.staging_dir / "acme").exists()  # nothing was created or looked up for them


def test_another_organizations_job_is_indistinguishable_from_a_missing_one(api: Api) -> None:
    theirs = api.create_key("globex")
    job_id = api.run("suppliers", [{"externalId": "MINE"}, {"externalId": 7.5, "x": 1}])["jobId"]
    for path in STATUS_PATHS:
        other = api.client.get(path.format(job_id), headers={"x-api-key": theirs})
        missing = api.client.get(path.format("f" * 32), headers={"x-api-key": theirs})
        assert other.status_code == missing.status_code == 404
        assert other.json()["detail"].replace(job_id, "ID") == missing.json()["detail"].replace("f" * 32, "ID")
        assert "MINE" not in other.text


def test_another_organizations_job_stays_hidden_when_redis_lost_it(api: Api) -> None:
    """With Redis empty, status comes from the durable record, under the caller's organization only."""
    theirs = api.create_key("globex")
    job_id = api.post("suppliers", {"suppliers": [{"externalId": "MINE"}]}).json()["jobId"]
    api.connection.flushall()
    assert api.status(job_id).status_code == 200
    assert api.status(job_id, key=theirs).status_code == 404


def test_an_organization_never_writes_into_another_ones_staging(api: Api) -> None:
    theirs = api.create_key("globex")
    api.post("suppliers", {"suppliers": [{"externalId": "THEIRS"}]}, key=theirs)
    api.post("suppliers", {"suppliers": [{"externalId": "MINE", "organizationId": "globex"}]})
    staging = api.settings.staging_dir
    assert {p.parent.name for p in staging.rglob("*") if p.is_file()} == {"acme", "globex"}
    assert len(list((staging / "globex").glob("*.json"))) == len(list((staging / "acme").glob("*.json"))) == 1
    api.work()
    assert api.query("SELECT organization_id, external_id FROM suppliers ORDER BY 1") == [
        ("acme", "MINE"),
        ("globex", "THEIRS"),
    ]


def test_job_ids_are_random_128_bit(api: Api) -> None:
    ids = [api.post("suppliers", {"suppliers": []}).json()["jobId"] for _ in range(64)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", job_id) for job_id in ids)
    numbers = [int(job_id, 16) for job_id in ids]
    assert len({b - a for a, b in zip(numbers, numbers[1:], strict=False)}) == len(ids) - 1  # not sequential
    ones = sum(bin(n).count("1") for n in numbers)
    assert 64 * 64 - 400 < ones < 64 * 64 + 400  # ~half the bits set: 128 random bits each (sigma ~45)
    assert max(numbers).bit_length() > 120


def test_keys_are_never_logged_stored_or_echoed(tmp_path: Path) -> None:
    with external_redis(tmp_path / "redis") as server:
        stockyard = Stockyard(tmp_path / "stockyard", redis_url=server.url)
        try:
            keys = stockyard.data_dir / "keys.sqlite3"
            store = KeyStore(keys)
            revoked_id, revoked = store.create("acme", [Scope.IMPORT_WRITE, Scope.IMPORT_READ])
            store.revoke(revoked_id)
            read_only = store.create("acme", [Scope.IMPORT_READ])[1]
            secrets = [stockyard.key, revoked, read_only]
            stockyard.api()
            worker = stockyard.start("worker")
            answers = []
            job_id = stockyard.accept("suppliers", {"suppliers": [{"externalId": "A"}, {"externalId": ""}]})
            stockyard.wait_finished([job_id])
            tampered = stockyard.key[:-1] + ("A" if stockyard.key[-1] != "A" else "B")
            for key in [stockyard.key, revoked, read_only, tampered, stockyard.key + "x", "sy_" + "0" * 16 + "_" + "x"]:
                for body in (b'{"suppliers": []}', b"not json", b'{"suppliers": [1]}'):
                    answers.append(stockyard.post("suppliers", body, headers={"x-api-key": key}))
                answers.append(stockyard_get(stockyard, f"/api/import/status/{job_id}", key))
                answers.append(stockyard_get(stockyard, "/api/import/status/" + "0" * 32, key))
            assert {a.status_code for a in answers} >= {202, 400, 401, 403, 404}
            seen = "\n".join(
                [a.text + str(a.headers) for a in answers]
                + [process.output() for process in stockyard.processes]
                + [worker.output()]
                + [path.read_text(errors="replace") for path in stockyard.data_dir.rglob("*.json")]
                + [repr(dump_redis(server.url))]
            )
            listing = cli(stockyard, "keys", "list")
            for secret in secrets + [tampered]:
                assert secret not in seen
                assert secret.split("_", 2)[2] not in seen  # sy_<id>_<secret>: the secret may hold "_" too
                assert secret not in listing
                assert secret.encode() not in keys.read_bytes()
        finally:
            stockyard.cleanup()


def stockyard_get(stockyard: Stockyard, path: str, key: str) -> httpx.Response:
    return httpx.get(stockyard.url + path, headers={"x-api-key": key}, timeout=10)


def dump_redis(url: str) -> list[tuple[bytes, object]]:
    connection = redis.Redis.from_url(url)
    dumped: list[tuple[bytes, object]] = []
    for key in connection.scan_iter():
        kind = connection.type(key)
        if kind == b"string":
            dumped.append((key, connection.get(key)))
        elif kind == b"hash":
            dumped.append((key, connection.hgetall(key)))
        elif kind == b"list":
            dumped.append((key, connection.lrange(key, 0, -1)))
        elif kind == b"zset":
            dumped.append((key, connection.zrange(key, 0, -1)))
        elif kind == b"set":
            dumped.append((key, connection.smembers(key)))
    connection.close()
    return dumped


def cli(stockyard: Stockyard, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=stockyard.environment(),
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout + result.stderr
