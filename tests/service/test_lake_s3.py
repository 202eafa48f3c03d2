"""A lake whose data path is on S3 (moto's S3 server on 127.0.0.1, from .venv-s3): the real service writes
it, analysts read it live, and a writer killed before its commit leaves only orphaned files, which
maintenance deletes once they are old enough.

These run in the lake's environment (.venv-lake: DuckDB 1.5.5 with the ducklake, postgres and httpfs wheels).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from service.lake import LAKE, Lake, attach_sql, load_extensions
from service.settings import S3Access
from tests.conftest import REPOSITORY, S3Server
from tests.service.processes import Stockyard, wait_for
from tests.service.test_lake import levels

pytestmark = [pytest.mark.lake, pytest.mark.slow]


def analyst(catalog: str, s3: S3Access) -> duckdb.DuckDBPyConnection:
    """An analyst's DuckDB, as docs/analysts.md says: httpfs and an S3 secret, then the lake read-only."""
    con = duckdb.connect()
    load_extensions(con, s3)
    con.execute(attach_sql(catalog, read_only=True))
    return con


def _objects(con: duckdb.DuckDBPyConnection, data_path: str) -> set[str]:
    return {row[0] for row in con.execute("SELECT file FROM glob(?)", [f"{data_path}**/*.parquet"]).fetchall()}


def test_serve_writes_a_lake_on_s3_that_analysts_read_live(stockyard: Stockyard, s3_server: S3Server) -> None:
    s3 = s3_server.access
    data_path = s3_server.new_data_path()
    serve = stockyard.serve(STOCKYARD_WAREHOUSE="ducklake", STOCKYARD_LAKE_DATA_PATH=data_path, **s3_server.environment)
    assert f"data in {data_path}" in serve.output() and "creating an S3 secret" in serve.output()
    first = stockyard.accept("inventory", levels(100, 5))
    assert stockyard.wait_finished([first])[0]["status"] == "COMPLETED", serve.output()
    catalog = f"host={stockyard.data_dir / 'postgres'} port=5432 user=postgres dbname=stockyard"
    con = analyst(catalog, s3)
    assert con.execute(f"SELECT count(*), sum(quantity_on_hand) FROM {LAKE}.inventory_levels").fetchone() == (100, 500)
    second = stockyard.accept("inventory", levels(50, 7))  # half the keys again
    assert stockyard.wait_finished([second])[0]["status"] == "COMPLETED", serve.output()
    assert con.execute(f"SELECT count(*), sum(quantity_on_hand) FROM {LAKE}.inventory_levels").fetchone() == (
        100,
        50 * 7 + 50 * 5,
    )
    assert _objects(con, data_path)  # the rows are Parquet objects in the bucket
    assert not (stockyard.data_dir / "lake").exists()  # and nothing of the lake on the local disk
    ready = httpx.get(f"{stockyard.url}/ready", timeout=30).json()
    assert ready["checks"]["catalog"] == "ok", ready


def test_without_a_key_the_lake_signs_with_the_aws_credential_chain(
    tmp_path: Path, lake_catalog: str, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No AWS_ACCESS_KEY_ID: the key comes from where AWS's tools look, here a shared credentials file
    (the same chain finds an instance's or a pod's role). The server refuses unsigned requests."""
    from service import warehouse
    from service.kinds import KINDS
    from tests.service.test_merge_model import _prepare

    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[default]\naws_access_key_id = {s3_server.key_id}\naws_secret_access_key = {s3_server.secret}\n"
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    lake = Lake(tmp_path, lake_catalog, s3_server.new_data_path(), s3=replace(s3_server.access, key_id="", secret=""))
    assert lake.try_hold()
    try:
        rows = [{"skuId": f"K{i}", "locationId": "WH1", "quantityOnHand": 3} for i in range(100)]
        with lake.cursor() as con:
            warehouse.apply_jobs(con, KINDS["inventory"].tables, [_prepare(tmp_path, "inventory", rows)])
            assert con.execute("SELECT count(*), sum(quantity_on_hand) FROM inventory_levels").fetchone() == (100, 300)
    finally:
        lake.release()


def test_a_wrong_secret_keeps_the_job_waiting_with_the_reason_and_loses_nothing(
    stockyard: Stockyard, s3_server: S3Server, lake_catalog: str
) -> None:
    """S3 refuses the signature (403): nothing is written, the job waits and says why; the operator fixes
    the secret and restarts the workers, and the job lands."""
    data_path = s3_server.new_data_path()
    settings = {
        "STOCKYARD_WAREHOUSE": "ducklake",
        "STOCKYARD_LAKE_CATALOG": lake_catalog,
        "STOCKYARD_LAKE_DATA_PATH": data_path,
    }
    wrong = {**s3_server.environment, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    stockyard.api(env=stockyard.environment(**settings, **s3_server.environment))
    worker = stockyard.start("worker", env=stockyard.environment(**settings, **wrong))
    job = stockyard.accept("inventory", levels(100, 5))

    def waiting_reason() -> str | None:
        status = stockyard.status(job)
        assert status["status"] in ("PENDING", "PROCESSING"), status
        reasons = [w["message"] for w in status["warnings"] if w["code"] == "retrying" and "403" in w["message"]]
        return reasons[0] if reasons else None

    reason = wait_for(waiting_reason, 60, "the job to say S3 refused it")
    assert "403" in reason, reason
    worker.kill_group()
    worker.wait(10)
    stockyard.start("worker", log="worker-2.log", env=stockyard.environment(**settings, **s3_server.environment))
    assert stockyard.wait_finished([job], timeout=90)[0]["status"] == "COMPLETED"
    con = analyst(lake_catalog, s3_server.access)
    assert con.execute(f"SELECT count(*), sum(quantity_on_hand) FROM {LAKE}.inventory_levels").fetchone() == (100, 500)


# A writer that gets as far as its commit and stops there: its files are written, its catalog row is not.
WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from service import warehouse
    from service.kinds import KINDS
    from service.lake import Lake
    from tests.service.test_merge_model import _prepare

    directory, catalog, data_path = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    lake = Lake(directory, catalog, data_path)
    assert lake.try_hold()
    rows = [{"skuId": f"K{i}", "locationId": "WH1", "quantityOnHand": 9} for i in range(5_000)]
    job = _prepare(directory, "inventory", rows)

    def stop_before_commit() -> None:
        print("written", flush=True)
        time.sleep(600)

    with lake.cursor() as con:
        warehouse.apply_jobs(con, KINDS["inventory"].tables, [job], before_commit=stop_before_commit)
    """
)


def test_a_writer_killed_before_its_commit_leaves_orphans_that_maintenance_deletes_once_old(
    tmp_path: Path, lake_catalog: str, s3_server: S3Server
) -> None:
    from service import warehouse
    from service.kinds import KINDS
    from tests.service.test_merge_model import _prepare

    s3 = s3_server.access
    data_path = s3_server.new_data_path()
    lake = Lake(tmp_path / "a", lake_catalog, data_path, s3=s3)
    assert lake.try_hold()
    try:
        committed = [{"skuId": f"K{i}", "locationId": "WH1", "quantityOnHand": 1} for i in range(3_000)]
        with lake.cursor() as con:
            warehouse.apply_jobs(con, KINDS["inventory"].tables, [_prepare(tmp_path, "inventory", committed)])
            before = _objects(con, data_path)

        environment: dict[str, Any] = {**os.environ, **s3_server.environment, "PYTHONPATH": str(REPOSITORY)}
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "b"), lake_catalog, data_path],
            env=environment, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "written"
        finally:
            writer.kill()  # SIGKILL: no rollback, no cleanup
            writer.wait(10)

        reader = analyst(lake_catalog, s3)
        held = f"SELECT count(*), sum(quantity_on_hand) FROM {LAKE}.inventory_levels"
        assert reader.execute(held).fetchone() == (3_000, 3_000)  # nothing of the killed writer's
        orphans = _objects(reader, data_path) - before
        assert orphans, "the killed writer wrote its files before the commit that never came"

        kept = lake.maintain(snapshot_days=7)  # young orphans may belong to a commit still under way
        assert kept["orphans_deleted"] == 0 and orphans <= _objects(reader, data_path), kept
        deleted = lake.maintain(snapshot_days=7, orphan_age=timedelta(0))
        assert deleted["orphans_deleted"] >= len(orphans), deleted
        wait_for(lambda: not orphans & _objects(reader, data_path), 10, "the orphans to be deleted")
        assert reader.execute(held).fetchone() == (3_000, 3_000)
        changed = [{**row, "quantityOnHand": 2} for row in committed[:10]]
        with lake.cursor() as con:  # and the lake takes the next job as before
            warehouse.apply_jobs(con, KINDS["inventory"].tables, [_prepare(tmp_path, "inventory", changed)])
        assert reader.execute(held).fetchone() == (3_000, 3_010)
    finally:
        lake.release()
