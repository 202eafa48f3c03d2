"""The DuckLake warehouse through the real service: `serve` with its embedded PostgreSQL, analysts attached
live, time travel to a job's snapshot, a kill -9 of the catalog's server, and maintenance.

These run in the lake's environment (.venv-lake: DuckDB 1.5.5 with the ducklake and postgres wheels).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from service.lake import LAKE, Lake, attach_sql, load_extensions
from tests.service.processes import Stockyard, children_of, wait_for

pytestmark = [pytest.mark.lake, pytest.mark.slow]


def analyst(catalog: str) -> duckdb.DuckDBPyConnection:
    """An analyst's own DuckDB with the lake attached read-only, as docs/analysts.md says."""
    con = duckdb.connect()
    load_extensions(con)
    con.execute(attach_sql(catalog, read_only=True))
    return con


def levels(count: int, quantity: int, start: int = 0) -> dict[str, Any]:
    rows = [{"skuId": f"S{i}", "locationId": "WH1", "quantityOnHand": quantity} for i in range(start, start + count)]
    return {"levels": rows}


def _catalog(stockyard: Stockyard) -> str:
    return f"host={stockyard.data_dir / 'postgres'} port=5432 user=postgres dbname=stockyard"


def test_serve_with_the_lake_starts_its_catalog_and_analysts_see_each_job_at_once(stockyard: Stockyard) -> None:
    serve = stockyard.serve(STOCKYARD_WAREHOUSE="ducklake")
    first = stockyard.accept("inventory", levels(100, 5))
    assert stockyard.wait_finished([first])[0]["status"] == "COMPLETED", serve.output()
    con = analyst(_catalog(stockyard))
    assert con.execute(f"SELECT count(*), sum(quantity_on_hand) FROM {LAKE}.inventory_levels").fetchone() == (100, 500)

    second = stockyard.accept("inventory", levels(50, 7))  # half the keys again, with a new quantity
    assert stockyard.wait_finished([second])[0]["status"] == "COMPLETED"
    # the same attached reader sees the new commit on its next query: no copy, no reattach
    assert con.execute(f"SELECT count(*), sum(quantity_on_hand) FROM {LAKE}.inventory_levels").fetchone() == (
        100,
        50 * 7 + 50 * 5,
    )
    # "the warehouse as of job X": its import_jobs row carries the snapshot that committed it
    con.execute(f"SET VARIABLE job_snapshot = (SELECT snapshot_id FROM {LAKE}.import_jobs WHERE job_id = ?)", [first])
    as_of_first = con.execute(
        f"SELECT count(*), sum(quantity_on_hand) FROM {LAKE}.inventory_levels"
        " AT (VERSION => getvariable('job_snapshot'))"
    ).fetchone()
    assert as_of_first == (100, 500)
    assert not (stockyard.data_dir / "analytics.duckdb").exists()  # the lake has no copy
    assert "DuckLake: catalog on embedded PostgreSQL" in serve.output()


def test_a_killed_catalog_server_is_restarted_and_no_job_is_lost(stockyard: Stockyard) -> None:
    serve = stockyard.serve(STOCKYARD_WAREHOUSE="ducklake")
    jobs = [stockyard.accept("inventory", levels(200, n, start=100 * n)) for n in range(1, 4)]
    postgres = [pid for pid in children_of(serve.pid, "postgres") if _is_postmaster(pid, stockyard.data_dir)]
    assert postgres, serve.output()
    for pid in postgres:
        os.kill(pid, signal.SIGKILL)
    jobs += [stockyard.accept("inventory", levels(200, n, start=100 * n)) for n in range(4, 7)]
    statuses = stockyard.wait_finished(jobs, timeout=120)
    assert [s["status"] for s in statuses] == ["COMPLETED"] * 6, serve.output()
    wait_for(lambda: "restarting it" in serve.output(), 10, "serve to restart PostgreSQL")
    con = analyst(_catalog(stockyard))
    # each job's 200 keys, overlapping the next one's first 100: the later job wins each shared key
    expected = {f"S{i}": float(n) for n in range(1, 7) for i in range(100 * n, 100 * n + 200)}
    held = dict(con.execute(f"SELECT sku_id, quantity_on_hand FROM {LAKE}.inventory_levels").fetchall())
    assert held == expected
    applied = con.execute(f"SELECT count(*), count(DISTINCT job_id) FROM {LAKE}.import_jobs").fetchone()
    assert applied == (6, 6)


def test_ready_names_an_unreachable_catalog_without_its_password(stockyard: Stockyard, tmp_path: Path) -> None:
    catalog = f"host={tmp_path / 'no-server-here'} port=5432 user=stockyard password=hunter2 dbname=lake"
    stockyard.api(env=stockyard.environment(STOCKYARD_WAREHOUSE="ducklake", STOCKYARD_LAKE_CATALOG=catalog))
    response = httpx.get(f"{stockyard.url}/ready", timeout=30)
    assert response.status_code == 503
    problem = response.json()["checks"]["catalog"]
    assert problem.startswith("unreachable:") and "no-server-here" in problem, problem
    assert "hunter2" not in response.text


def _is_postmaster(pid: int, data_dir: Path) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    return command[0].endswith(b"/postgres") and str(data_dir / "postgres").encode() in b" ".join(command)


def test_maintenance_compacts_small_files_and_keeps_every_row_and_time_travel(
    tmp_path: Path, lake_catalog: str
) -> None:
    from tests.service.test_merge_model import _prepare

    lake = Lake(tmp_path, lake_catalog, tmp_path / "lake")
    assert lake.try_hold()
    try:
        from service import warehouse
        from service.kinds import KINDS

        for n in range(30):  # 20 rows a job: more than DuckLake inlines into the catalog, so each writes a file
            rows = [{"skuId": f"S{n}-{i}", "locationId": "WH1", "quantityOnHand": n} for i in range(20)]
            job = _prepare(tmp_path, "inventory", rows)
            with lake.cursor() as con:
                warehouse.apply_jobs(con, KINDS["inventory"].tables, [job])
        with lake.cursor() as con:
            middle = con.execute("SELECT max(snapshot_id) FROM inventory_levels WHERE sku_id = 'S14-0'").fetchone()
            before = con.execute("SELECT sku_id, quantity_on_hand FROM inventory_levels ORDER BY 1").fetchall()
        files = lake.maintain(snapshot_days=7)
        assert files["files_after"] < files["files_before"], files
        with lake.cursor() as con:
            assert con.execute("SELECT sku_id, quantity_on_hand FROM inventory_levels ORDER BY 1").fetchall() == before
            assert middle is not None
            travelled = con.execute(f"SELECT count(*) FROM inventory_levels AT (VERSION => {middle[0]})").fetchone()
            assert travelled == (15 * 20,)
    finally:
        lake.release()


ORGANIZATIONS = ["acme", "globex", "initech", "umbrella"]


def test_appliers_on_two_machines_write_one_lake_through_random_kill_9_losing_nothing_and_keeping_order(
    tmp_path: Path, stockyard: Stockyard, lake_catalog: str
) -> None:
    """Two machines (data directories of their own) share Redis, the staging path, the catalog and the
    lake's data path; each runs two workers (one of them its applier). Four organizations post jobs
    whose outcome depends on their order into the same tables, with large ones among them, while a
    worker of either machine is killed at random every 0.5-1 s and started again."""
    shared = {
        "STOCKYARD_WAREHOUSE": "ducklake",
        "STOCKYARD_LAKE_CATALOG": lake_catalog,
        "STOCKYARD_LAKE_DATA_PATH": str(tmp_path / "shared" / "lake"),
        "STOCKYARD_STAGING_DIR": str(tmp_path / "shared" / "staging"),
        "STOCKYARD_GROUP_MAX_ROWS": "4",  # jobs of 5 rows are large: prepared alone, in chunks, merged alone
        "STOCKYARD_VALIDATION_CHUNK_ROWS": "2",
        "STOCKYARD_MAX_ATTEMPTS": "1000",  # these kills are not the job's fault
    }
    other = Stockyard(tmp_path / "machine-b", redis_url=stockyard.redis_url)
    try:
        stockyard.api(env=stockyard.environment(**shared))
        machines = [stockyard, other]
        workers = {
            (index, slot): machine.start("worker", log=f"worker-{slot}.log", env=machine.environment(**shared))
            for index, machine in enumerate(machines)
            for slot in range(2)
        }
        stop = threading.Event()
        kills: list[tuple[int, int]] = []

        def killer() -> None:
            chooser = random.Random(11)
            while not stop.wait(chooser.uniform(0.5, 1.0)):
                victim = chooser.choice(sorted(workers))
                workers[victim].kill_group()
                workers[victim].wait(10)
                kills.append(victim)
                index, slot = victim
                machine = machines[index]
                workers[victim] = machine.start("worker", log=f"worker-{slot}.log", env=machine.environment(**shared))

        thread = threading.Thread(target=killer)
        thread.start()
        accepted: dict[str, list[str]] = {organization: [] for organization in ORGANIZATIONS}
        try:
            for round_ in range(7):
                for organization in ORGANIZATIONS:
                    skus = 5 if round_ % 3 == 0 else 1  # every third job large
                    body = {"levels": [{"skuId": f"P{i}", "locationId": "WH1", "quantityOnHand": round_}
                                       for i in range(skus)]}  # fmt: skip
                    accepted[organization].append(stockyard.accept("inventory", body, organization))
                time.sleep(0.2)
            for organization, job_ids in accepted.items():
                statuses = stockyard.wait_finished(job_ids, timeout=180, organization=organization)
                assert [s["status"] for s in statuses] == ["COMPLETED"] * len(job_ids), statuses
        finally:
            stop.set()
            thread.join()
        assert len(kills) >= 5 and {index for index, _ in kills} == {0, 1}, kills
        con = analyst(lake_catalog)
        jobs = con.execute(f"SELECT job_id, organization_id, completed_at FROM {LAKE}.import_jobs").fetchall()
        every = [job_id for job_ids in accepted.values() for job_id in job_ids]
        assert sorted(row[0] for row in jobs) == sorted(every)  # each job applied exactly once
        for organization, job_ids in accepted.items():
            committed = {job_id: completed for job_id, owner, completed in jobs if owner == organization}
            in_acceptance_order = [committed[job_id] for job_id in job_ids]
            assert in_acceptance_order == sorted(in_acceptance_order), organization
            rows = con.execute(
                f"SELECT sku_id, quantity_on_hand, last_job_id FROM {LAKE}.inventory_levels"
                " WHERE organization_id = ? ORDER BY 1",
                [organization],
            ).fetchall()
            # the last job (round 6) is a large one: it wrote every key last
            assert rows == [(f"P{i}", 6.0, job_ids[6]) for i in range(5)], organization
        appliers = {
            index for index, machine in enumerate(machines)
            for log in machine.root.glob("worker-*.log") if "applies jobs to the warehouse now" in log.read_text()
        }  # fmt: skip
        assert appliers == {0, 1}  # each machine had an applier
    finally:
        other.cleanup()


def test_maintenance_while_jobs_commit_loses_nothing(tmp_path: Path, lake_catalog: str, redis_connection: Any) -> None:
    """Compaction runs in the applier's quiet time, but a job may still commit meanwhile: whichever of the
    two conflicts is tried again, and every job's rows are there once."""
    from service import warehouse
    from service.apply import tables_written
    from service.kinds import KINDS
    from service.prepare import is_transient
    from service.table_locks import TableLocks
    from tests.service.test_merge_model import _prepare

    lake = Lake(tmp_path, lake_catalog, tmp_path / "lake", locks=TableLocks(redis_connection))
    assert lake.try_hold()
    tables = KINDS["inventory"].tables
    done = threading.Event()
    passes = 0

    def maintain() -> None:
        nonlocal passes
        while not done.is_set():
            lake.maintain(snapshot_days=7)
            passes += 1

    try:
        maintainer = threading.Thread(target=maintain)
        maintainer.start()
        for n in range(25):
            rows = [{"skuId": f"S{n}-{i}", "locationId": "WH1", "quantityOnHand": n} for i in range(20)]
            job = _prepare(tmp_path, "inventory", rows)
            while True:
                try:
                    with lake.cursor() as con, lake.exclusive(tables_written(tables, [job[0]])):
                        warehouse.apply_jobs(con, tables, [job])
                    break
                except Exception as error:
                    assert is_transient(error), error
        done.set()
        maintainer.join(60)
        assert passes >= 1
        with lake.cursor() as con:
            assert con.execute("SELECT count(*), count(DISTINCT sku_id) FROM inventory_levels").fetchone() == (500, 500)
            assert con.execute("SELECT count(*) FROM import_jobs").fetchone() == (25,)
    finally:
        done.set()
        lake.release()


def test_a_lake_says_when_its_catalog_does_not_answer(tmp_path: Path, lake_catalog: str) -> None:
    """A job whose merge failed is failed for good only if the catalog answers: DuckDB reports a catalog lost
    mid-statement in errors of any class (service/apply.py asks this first)."""
    assert Lake(tmp_path, lake_catalog, tmp_path / "lake").unreachable() is None
    gone = Lake(tmp_path, f"host={tmp_path / 'no-server'} port=5432 user=postgres dbname=stockyard", tmp_path / "x")
    assert "connect" in (gone.unreachable() or "").lower()
