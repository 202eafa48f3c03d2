"""The benchmark suite runs once on a tiny size and writes its three outputs. No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.__main__ import main
from benchmarks.breakdown import STAGES
from benchmarks.concurrency import preload_inventory
from benchmarks.peers import dlt_available
from service import warehouse
from service.settings import Settings

TARGETS = {
    "end to end / floor",
    "end to end / SQL MERGE INTO",
    "end to end / SQL DELETE+INSERT",
    "end to end / dlt best case",
    "merge stage / dlt best case",
    "end to end / per-row",
    "202 time / decode time",
    "peak RSS api / body",
    "peak RSS worker / body",
    "small jobs per second",
    "small-job p95 latency (s)",
    "small jobs, 2 workers / 1",
}


@pytest.mark.slow
def test_suite_runs_on_a_tiny_size_and_writes_its_outputs(tmp_path: Path) -> None:
    out = tmp_path / "results"
    arguments = ["--tiny", "--kinds", "inventory", "--out", str(out), "--work-dir", str(tmp_path / "work")]

    outcome = CliRunner().invoke(main, arguments)

    assert outcome.exit_code == 0, outcome.output
    assert "| inventory | 200 |" in outcome.output
    assert {p.name for p in out.iterdir()} == {"latest.json", "latest.md", "latest.png"}
    assert (out / "latest.png").read_bytes().startswith(b"\x89PNG")
    assert "## Targets" in (out / "latest.md").read_text()
    assert list((tmp_path / "work").iterdir()) == []  # scratch space is cleaned up

    results = json.loads((out / "latest.json").read_text())
    assert set(results) == {
        "meta", "runs", "linearity", "job_stream", "publish", "small_staging", "apply_runs", "concurrency", "notes",
        "targets",
    }  # fmt: skip
    (run,) = results["runs"]
    assert (run["kind"], run["rows"]) == ("inventory", 200)
    assert run["accepted_rows"] + run["failed_rows"] == 200
    assert set(run["stages"]) == set(STAGES)
    assert all(seconds >= 0 for seconds in run["stages"].values())
    assert run["floor"]["rows_per_second"] > 0
    assert run["floor"]["method"] in run["floor"]["methods"] and len(run["floor"]["methods"]) == 5
    assert all(run["peers"][peer]["rows_per_second"] > 0 for peer in ("SQL MERGE INTO", "SQL DELETE+INSERT"))
    end_to_end = run["end_to_end"]
    assert end_to_end["rows"] == 200
    assert 0 < end_to_end["accepted_seconds"] <= end_to_end["completed_seconds"]
    assert {"api", "worker"} <= set(end_to_end["peak_rss"])
    assert {"api", "worker"} <= set(end_to_end["resting_rss"])
    assert all(0 < end_to_end["resting_rss"][role] <= end_to_end["peak_rss"][role] for role in ("api", "worker"))
    memory = [t for t in results["targets"] if t["name"].startswith("peak RSS")]
    assert len(memory) == 2 and all("MB at rest, before any upload" in t["note"] for t in memory)
    sql_peers = {"SQL MERGE INTO", "SQL DELETE+INSERT"}
    expected_peers = sql_peers | ({"per-row", "dlt dicts", "dlt arrow"} if dlt_available() else {"per-row"})
    assert set(run["peers"]) == expected_peers
    assert run["peers"]["per-row"]["sampled"] is True
    assert set(run["ratios"]) >= {"end_to_end_vs_floor", "end_to_end_vs_per_row", "accepted_vs_decode",
                                  "end_to_end_vs_sql_merge", "end_to_end_vs_sql_delete_insert"}  # fmt: skip
    assert results["job_stream"]["jobs"] == 3
    (staged,) = results["small_staging"]
    assert staged["kind"] == "inventory" and staged["decoded_ms"] > 0 and staged["duckdb_ms"] > 0
    assert "## Staging a small body in the API" in (out / "latest.md").read_text()
    assert [(run["jobs"], run["organizations"]) for run in results["apply_runs"]] == [
        (1, 1), (2, 1), (4, 1), (8, 1), (2, 2), (4, 4), (8, 8)
    ]  # fmt: skip
    assert all(run["transaction_ms"] > 0 for run in results["apply_runs"])
    assert results["publish"][0]["warehouse_bytes"] > 0
    fairness = results["concurrency"]["fairness"]
    assert fairness["small_jobs"] >= 20 and 0 < fairness["p50_seconds"] <= fairness["p95_seconds"]
    assert [run["workers"] for run in results["concurrency"]["scaling"]] == [1, 2]
    assert all(run["jobs"] == 10 and run["jobs_per_second"] > 0 for run in results["concurrency"]["scaling"])
    large = results["concurrency"]["large_warehouse"]
    assert (large["warehouse_rows"], large["jobs"], large["workers"]) == (1_000, 10, 2)
    assert "Into a large warehouse" in (out / "latest.md").read_text()
    for small_jobs in [*results["concurrency"]["scaling"], large]:
        cpu = small_jobs["cpu_seconds"]
        assert set(cpu) == {"api", "workers", "redis", "clients"}
        # counted in clock ticks (10 ms): Redis may serve ten tiny jobs in less than one
        assert all(cpu[process] > 0 for process in ("api", "workers", "clients")) and cpu["redis"] >= 0
    assert "CPU ms/job: API" in (out / "latest.md").read_text()
    assert "## Many organizations at once" in (out / "latest.md").read_text()
    assert {target["name"] for target in results["targets"]} == TARGETS
    assert all(target["met"] in (True, False, None) for target in results["targets"])


def test_preloaded_rows_are_in_the_warehouse_the_service_opens(tmp_path: Path) -> None:
    preload_inventory(tmp_path, 1_000, ["org-0", "org-1"])
    settings = Settings(data_dir=tmp_path)
    live = warehouse.Warehouse(settings.data_dir, settings.warehouse_path, settings.duckdb_config())
    assert live.try_hold()  # let go by the preload
    try:
        with live.cursor() as con:
            counted = con.execute(
                "SELECT organization_id, count(*), count(DISTINCT (sku_id, location_id)) FROM inventory_levels"
                " GROUP BY 1 ORDER BY 1"
            ).fetchall()
    finally:
        live.release()
    assert counted == [("org-0", 500, 500), ("org-1", 500, 500)]
