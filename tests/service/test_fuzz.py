"""The API fuzzed from its own OpenAPI document (schemathesis), with a valid key, in a bounded run:
zero 5xx, and every response conforms to the document (status code, content type, headers, body)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from litestar import Litestar
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.auth import KeyStore, Scope
from service.settings import Settings

EXAMPLES = 10
"""Per operation and mode: 18 operations x 2 modes x 10 keeps the run to a few seconds."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def app(settings: Settings, redis_connection: redis.Redis) -> Iterator[Litestar]:
    yield create_app(settings, redis_connection)


@pytest.fixture
def key(settings: Settings) -> str:
    return KeyStore(settings.keys_path).create("acme", [Scope.IMPORT_WRITE, Scope.IMPORT_READ])[1]


def operations(app: Litestar) -> list[APIOperation]:
    """Every operation but /ready, whose 503 is its answer while no worker runs (test_operations.py)."""
    loaded = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    return [op for op in (result.ok() for result in loaded.get_all_operations()) if op.path != "/ready"]


# schemathesis' own pytest plugin (`from_fixture(...).parametrize()`) breaks on pytest 9 (it sets
# request.node._nodeid); its per-operation Hypothesis strategies are driven directly instead.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_own_schema(app: Litestar, key: str, mode: GenerationMode) -> None:
    fuzzed = operations(app)
    assert len(fuzzed) == 18  # six imports, six job endpoints, four webhook endpoints, health, metrics
    seen: set[int] = set()

    for operation in fuzzed:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case) -> None:
            seen.add(case.call_and_validate(headers={"x-api-key": key}, checks=CHECKS).status_code)

        call()
    assert {202, 404} <= seen if mode is GenerationMode.POSITIVE else {400, 404} <= seen, seen
    assert max(seen) < 500
