"""The analysts' copy: published at most once per interval while commits keep coming, never left stale."""

from __future__ import annotations

import dataclasses
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from service import warehouse
from service.publish import Publisher
from service.settings import Settings
from service.warehouse import Warehouse


@pytest.fixture
def held(settings: Settings) -> Iterator[Warehouse]:
    live = Warehouse(settings.data_dir, settings.warehouse_path)
    assert live.try_hold()
    yield live
    live.release()


def commit(live: Warehouse, publisher: Publisher, external_id: str) -> None:
    with live.cursor() as con:
        con.execute(
            "INSERT INTO suppliers VALUES ('acme', ?, false, now(), now(), 'job')",
            [external_id],
        )
    publisher.committed()


def published(settings: Settings) -> list[str]:
    with duckdb.connect(str(settings.analytics_path), read_only=True) as con:
        return [row[0] for row in con.execute("SELECT external_id FROM suppliers ORDER BY 1").fetchall()]


def every(seconds: float, settings: Settings, live: Warehouse) -> Publisher:
    return Publisher(live, dataclasses.replace(settings, publish_interval_seconds=seconds))


def test_a_burst_of_commits_is_published_once_per_interval(settings: Settings, held: Warehouse) -> None:
    publisher = every(60, settings, held)
    commit(held, publisher, "A")
    assert publisher.publish_if_due()  # the first copy is published at once
    commit(held, publisher, "B")
    assert not publisher.publish_if_due()  # within the interval: pending, the copy is not redone
    assert published(settings) == ["A"] and publisher.pending

    publisher.last_published -= 61  # the interval has passed
    assert publisher.publish_if_due()
    assert published(settings) == ["A", "B"]
    assert not publisher.publish_if_due()  # nothing left pending


def test_a_costly_copy_is_published_less_often(settings: Settings, held: Warehouse) -> None:
    """The wait after a copy grows with what the copy cost, so publishing cannot starve the applier."""
    publisher = every(0.001, settings, held)
    commit(held, publisher, "A")
    assert publisher.publish_if_due()
    publisher.last_cost = 3600  # as if that copy had taken an hour
    commit(held, publisher, "B")
    assert not publisher.publish_if_due()
    assert published(settings) == ["A"]
    publisher.last_cost = 0
    assert publisher.publish_if_due()
    assert published(settings) == ["A", "B"]


def test_an_interval_of_zero_publishes_after_every_commit(settings: Settings, held: Warehouse) -> None:
    publisher = every(0, settings, held)
    for name in ("A", "B", "C"):
        commit(held, publisher, name)
        assert publisher.publish_if_due()
    assert published(settings) == ["A", "B", "C"]


def test_a_failed_copy_stays_pending_and_is_made_later(
    settings: Settings, held: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    publisher = every(0, settings, held)
    commit(held, publisher, "A")
    assert publisher.publish_if_due()

    def disk_full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    commit(held, publisher, "B")
    with monkeypatch.context() as patched:
        patched.setattr(warehouse, "_copy_for_analysts", disk_full)
        assert not publisher.publish_if_due()
    assert publisher.pending and published(settings) == ["A"]
    assert not publisher.publish_if_due()  # a failed copy is tried again after a pause (1 s, doubling)
    publisher.last_published -= 1.5
    assert publisher.publish_if_due()
    assert published(settings) == ["A", "B"] and not publisher.pending


def test_a_stale_wal_beside_the_copy_is_removed(settings: Settings, held: Warehouse) -> None:
    """An analyst who opened the copy read-write and was killed leaves a WAL that breaks every reader."""
    publisher = every(0, settings, held)
    commit(held, publisher, "A")
    assert publisher.publish_if_due()
    wal = settings.analytics_path.with_name(settings.analytics_path.name + ".wal")
    wal.write_bytes(b"\x00" * 512)
    commit(held, publisher, "B")
    assert publisher.publish_if_due()
    assert not wal.exists()
    assert published(settings) == ["A", "B"]


LAKE_PYTHON = Path(__file__).resolve().parents[2] / ".venv-lake" / "bin" / "python"
"""An environment with DuckDB 1.5.5 (the lake's): what an analyst on DuckDB 1.5 opens the copy with."""


def test_duckdb_1_5_opens_the_published_copy(api: Any) -> None:
    if not LAKE_PYTHON.exists():
        pytest.skip("no DuckDB 1.5 here: `make install-lake` builds .venv-lake, which has it (make test does)")
    api.run("inventory", [{"skuId": "A", "locationId": "WH1", "quantityOnHand": 3}])
    script = (
        "import duckdb, sys; assert duckdb.__version__.startswith('1.5'), duckdb.__version__;"
        " con = duckdb.connect(sys.argv[1], read_only=True);"
        " print(con.execute('SELECT sku_id, quantity_on_hand FROM inventory_levels').fetchall())"
    )
    done = subprocess.run(
        [str(LAKE_PYTHON), "-c", script, str(api.settings.analytics_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('A', 3.0)]"
