"""Fixtures of the service tests that run real processes: a Stockyard with its own Redis, a browser."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.processes import Stockyard, external_redis

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def stockyard(tmp_path: Path) -> Iterator[Stockyard]:
    """A data directory with an external Redis of its own (`.redis_server`, to kill), nothing started."""
    with external_redis(tmp_path / "redis") as server:
        created = Stockyard(tmp_path / "stockyard", redis_url=server.url)
        created.redis_server = server  # type: ignore[attr-defined]
        yield created
        created.cleanup()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium (the system's package), driven by Playwright."""
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine: install the system package (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()
