"""The DuckLake warehouse against the DuckDB file, in one run: `python -m benchmarks.lake` in .venv-lake
(`make bench` runs it there after the main suite).

- End to end per kind: the same body through `stockyard serve` with the file in the default environment
  (DuckDB 2.x), with the file in the lake's (DuckDB 1.5.5), and with the lake (1.5.5, embedded PostgreSQL).
- Visibility: a reader attached to the lake (or reading the analysts' copy, for the file) polls every
  10 ms for each of a stream of small jobs; from the job's completedAt (stamped just before its COMMIT)
  until the reader sees its import_jobs row.
- Writers: ten organizations posting 1,000-row jobs back to back, against one applier and against two
  (a second "machine": a worker with a data directory of its own, sharing Redis, staging, catalog, data).
- Maintenance: 1,000 small commits straight into a lake, then its data files and an analyst's query,
  before and after `Lake.maintain`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import duckdb
import polars as pl

from benchmarks.concurrency import SCALING_ORGANIZATIONS, SMALL_ROWS, _keys, _post, _wait
from benchmarks.end_to_end import ORGANIZATION, RunningService, import_end_to_end, running_service
from benchmarks.generators import KINDS, BatchSpec, generate_body, write_body
from benchmarks.measure import rate
from contracts.common import validate
from service.embedded_postgres import catalog_url
from service.job import JobRecord, iso, utc_now
from service.job_files import JobFiles
from service.kinds import KINDS as SERVICE_KINDS
from service.lake import LAKE, Lake, attach_sql, load_extensions
from service.staging import stage_body
from transforms import Prepared

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_PYTHON = REPOSITORY / ".venv" / "bin" / "python"
RESULTS = Path(__file__).parent / "results"
LAKE_ENV = {"STOCKYARD_WAREHOUSE": "ducklake"}
MAINTENANCE_JOBS = 1_000
ANALYST_QUERY = (
    "SELECT location_id, count(*), sum(quantity_on_hand) FROM inventory_levels"
    " WHERE quantity_on_hand <= min_quantity GROUP BY ALL ORDER BY ALL"
)


def _say(message: str) -> None:
    click.echo(f"{datetime.now():%H:%M:%S} {message}", err=True)


@contextlib.contextmanager
def _short_dir(name: str) -> Iterator[Path]:
    """A data directory with a short path: Redis's and PostgreSQL's unix sockets live under it."""
    with tempfile.TemporaryDirectory(prefix=f"sy-{name}-") as short:
        yield Path(short) / "d"


def _service(name: str, backend: str, workers: int = 1) -> contextlib.AbstractContextManager[RunningService]:
    python = str(DEFAULT_PYTHON) if backend == "file 2.x" else sys.executable
    environment = LAKE_ENV if backend == "lake" else {}

    @contextlib.contextmanager
    def started() -> Iterator[RunningService]:
        with (
            _short_dir(name) as data_dir,
            running_service(data_dir, workers, python=python, environment=environment) as s,
        ):
            yield s

    return started()


BACKENDS = ("file 2.x", "file 1.5", "lake")


def end_to_end(kinds: tuple[str, ...], rows: int, work: Path, repeats: int) -> list[dict[str, Any]]:
    """Each kind through each backend `repeats` times, in rounds; each round starts with another backend,
    so that none is always the first after the bodies are written (the machine is shared and noisy)."""
    results = []
    for kind in kinds:
        spec = BatchSpec(kind, rows)
        body, previous = work / "body.json", work / "previous.json"
        with open(body, "wb") as sink:
            write_body(spec, sink)
        with open(previous, "wb") as sink:
            write_body(spec, sink, previous=True)
        for round_ in range(repeats):
            for backend in BACKENDS[round_ % 3 :] + BACKENDS[: round_ % 3]:
                _say(f"[{kind} {rows:,}] end to end, {backend}, round {round_ + 1} of {repeats}")
                with _service(kind, backend) as service:
                    measured = import_end_to_end(service, kind, body, previous)
                results.append(
                    {
                        "backend": backend,
                        "round": round_,
                        **asdict(measured),
                        "rows_per_second": rate(measured.rows, measured.completed_seconds),
                    }
                )
    return results


def visibility(backend: str, jobs: int) -> dict[str, Any]:
    """Commit to visible for a reader already attached (the lake) or reading the copy (the file)."""
    bodies = [generate_body(BatchSpec("inventory", SMALL_ROWS, seed=300 + n, bad_share=0.0)) for n in range(jobs)]
    with _service("visibility", backend) as service:
        service.wait(service.post("inventory", bodies[0])[0])  # warm up, untimed
        reader = _reader(service)
        delays = []
        for body in bodies:
            job_id, _ = service.post("inventory", body)
            seen = _seen(reader, service, job_id)
            status = service.status(job_id)
            committed = datetime.fromisoformat(status["completedAt"].replace("Z", "+00:00"))
            delays.append((seen - committed).total_seconds())
            time.sleep(0.1)
    ordered = sorted(delays)
    return {
        "backend": backend,
        "jobs": jobs,
        "p50_seconds": statistics.median(ordered),
        "p95_seconds": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max_seconds": ordered[-1],
    }


def _reader(service: RunningService) -> duckdb.DuckDBPyConnection | None:
    if not service.settings.is_lake:
        return None  # the copy is opened anew for each look: that is how a reader sees a new copy
    con = duckdb.connect()
    load_extensions(con)
    con.execute(attach_sql(catalog_url(service.settings.postgres_dir), read_only=True))
    return con


def _seen(reader: duckdb.DuckDBPyConnection | None, service: RunningService, job_id: str) -> datetime:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if reader is not None:
            found = reader.execute(f"SELECT 1 FROM {LAKE}.import_jobs WHERE job_id = ?", [job_id]).fetchone()
        else:
            found = None
            with contextlib.suppress(duckdb.Error, FileNotFoundError):
                path = service.settings.analytics_path
                if path.exists():
                    with duckdb.connect(str(path), read_only=True) as con:
                        found = con.execute("SELECT 1 FROM import_jobs WHERE job_id = ?", [job_id]).fetchone()
        if found:
            return datetime.now(UTC)
        time.sleep(0.01)
    raise RuntimeError(f"job {job_id} never became visible")


def writers(count: int, jobs_per_organization: int) -> dict[str, Any]:
    """Small jobs of ten organizations against `count` appliers (each on a data directory of its own)."""
    bodies = [generate_body(BatchSpec("inventory", SMALL_ROWS, seed=500 + n, bad_share=0.0)) for n in range(20)]
    organizations = [f"org-{n}" for n in range(SCALING_ORGANIZATIONS)]
    with _service("writers", "lake") as service, _short_dir("machine-b") as other:
        extra: list[subprocess.Popen[bytes]] = []
        if count > 1:
            settings = service.settings
            environment = {
                **{k: v for k, v in os.environ.items() if not k.startswith("STOCKYARD_") and k != "REDIS_URL"},
                **LAKE_ENV,
                "REDIS_URL": settings.effective_redis_url,
                "STOCKYARD_DATA_DIR": str(other),
                "STOCKYARD_LAKE_CATALOG": catalog_url(settings.postgres_dir),
                "STOCKYARD_LAKE_DATA_PATH": settings.lake_data_location,
                "STOCKYARD_STAGING_DIR": str(settings.staging_dir),
            }
            other.mkdir(parents=True)
            for _ in range(count - 1):
                extra.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "service.cli", "worker"],
                        env=environment,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                )
        try:
            keys = _keys(service, organizations)
            for organization in organizations:  # warm up, untimed: every organization's first job
                _wait(service, keys[organization], [_post(service, keys[organization], "inventory", bodies[0])])
            accepted: dict[str, list[str]] = {organization: [] for organization in organizations}

            def client(organization: str) -> None:
                for n in range(jobs_per_organization):
                    body = bodies[n % len(bodies)]
                    accepted[organization].append(_post(service, keys[organization], "inventory", body))

            started = time.perf_counter()
            threads = [threading.Thread(target=client, args=(organization,)) for organization in organizations]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for organization, job_ids in accepted.items():
                _wait(service, keys[organization], job_ids)
            seconds = time.perf_counter() - started
        finally:
            for process in extra:
                process.terminate()
                process.wait(timeout=60)
    jobs = SCALING_ORGANIZATIONS * jobs_per_organization
    return {"appliers": count, "jobs": jobs, "seconds": seconds, "jobs_per_second": jobs / seconds}


def maintenance(work: Path, jobs: int) -> dict[str, Any]:
    """Files and an analyst's query after `jobs` small commits, before and after maintenance."""
    from service import warehouse
    from service.embedded_postgres import start_postgres

    with _short_dir("maintenance") as directory:
        server = start_postgres(directory / "postgres")
        try:
            lake = Lake(directory, catalog_url(directory / "postgres"), directory / "lake", {"threads": 2})
            assert lake.try_hold()
            tables = SERVICE_KINDS["inventory"].tables
            started = time.perf_counter()
            for n in range(jobs):
                rows = [{"skuId": f"S{(n * 20 + i) % 5_000}", "locationId": f"WH{i % 4}", "quantityOnHand": i,
                         "reorderPoint": 5} for i in range(20)]  # fmt: skip
                job = _prepared(work / "maintenance", rows)
                with lake.cursor() as con:
                    warehouse.apply_jobs(con, tables, [job])
            commit_seconds = time.perf_counter() - started
            before = _lake_state(lake, directory / "lake")
            maintained = time.perf_counter()
            lake.maintain(snapshot_days=0)  # expire every snapshot but the last: what a week later looks like
            maintain_seconds = time.perf_counter() - maintained
            after = _lake_state(lake, directory / "lake")
            lake.release()
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {
        "jobs": jobs,
        "commit_seconds": commit_seconds,
        "maintain_seconds": maintain_seconds,
        "before": before,
        "after": after,
    }


def _prepared(work: Path, rows: list[dict[str, Any]]) -> tuple[Prepared, JobRecord]:
    """One inventory job staged, validated and prepared as the service does, ready to merge."""
    contract = SERVICE_KINDS["inventory"].contract
    files = JobFiles.of(work / "staging", ORGANIZATION, secrets.token_hex(16))
    files.directory.mkdir(parents=True, exist_ok=True)
    files.body.write_text(json.dumps({contract.array_key: rows}))
    staged = stage_body(contract, files.body, files.rows, None)
    prepared = SERVICE_KINDS["inventory"].prepare(validate(contract, pl.read_parquet(staged.rows_path)), ORGANIZATION)
    now = iso(utc_now())
    return prepared, JobRecord(files.job_id, ORGANIZATION, "inventory", "PROCESSING", len(rows), now, started_at=now)


def _lake_state(lake: Lake, data_path: Path) -> dict[str, Any]:
    with lake.cursor() as con:
        (active,) = con.execute(
            f"SELECT count(*) FROM __ducklake_metadata_{LAKE}.ducklake_data_file WHERE end_snapshot IS NULL"
        ).fetchone() or (0,)
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            con.execute(ANALYST_QUERY).fetchall()
            timings.append(time.perf_counter() - started)
    on_disk = [path for path in data_path.rglob("*.parquet")]
    return {
        "active_data_files": int(active),
        "files_on_disk": len(on_disk),
        "query_seconds": statistics.median(timings),
    }


@click.command()
@click.option("--rows", type=int, default=1_000_000, show_default=True, help="Rows per end-to-end body.")
@click.option("--kinds", default=",".join(KINDS), show_default=True)
@click.option("--visibility-jobs", type=int, default=40, show_default=True)
@click.option("--writer-jobs", type=int, default=10, show_default=True, help="Small jobs per organization (ten).")
@click.option("--maintenance-jobs", type=int, default=MAINTENANCE_JOBS, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True, help="Rounds of the end-to-end runs (medians).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True)
def main(
    rows: int, kinds: str, visibility_jobs: int, writer_jobs: int, maintenance_jobs: int, repeats: int, out: Path
) -> None:
    """Run the lake's benchmarks; write results/lake.{json,md} and print the tables."""
    results: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "duckdb": duckdb.__version__}
    with tempfile.TemporaryDirectory(prefix="stockyard-lake-bench-") as name:
        work = Path(name)
        _say(f"maintenance: {maintenance_jobs:,} small commits")
        results["maintenance"] = maintenance(work, maintenance_jobs)
        results["visibility"] = []
        for backend in ("lake", "file 2.x"):
            _say(f"visibility: {visibility_jobs} small jobs, {backend}")
            results["visibility"].append(visibility(backend, visibility_jobs))
        results["writers"] = []
        for count in (1, 2):
            _say(f"writers: ten organizations, {count} applier(s)")
            results["writers"].append(writers(count, writer_jobs))
        results["end_to_end"] = end_to_end(tuple(k for k in kinds.split(",") if k), rows, work, repeats)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lake.json").write_text(json.dumps(results, indent=2, default=str))
    markdown = render(results)
    (out / "lake.md").write_text(markdown)
    click.echo(markdown)


def render(results: dict[str, Any]) -> str:
    lines = [f"# The lake against the file ({results['when']}, lake on DuckDB {results['duckdb']})", ""]
    lines += [
        "## End to end (median of the rounds)",
        "",
        "| kind | rows | rounds | file 2.x rows/s | file 1.5 rows/s | lake rows/s | lake / file 2.x | each round"
        " | lake / file 1.5 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by_kind: dict[str, dict[str, dict[int, float]]] = {}
    for run in results["end_to_end"]:
        by_kind.setdefault(run["kind"], {}).setdefault(run["backend"], {})[run.get("round", 0)] = run["rows_per_second"]
    for kind, runs in by_kind.items():
        file2, file15, lake = (statistics.median(runs[b].values()) for b in BACKENDS)
        rounds = sorted(runs["lake"])
        each = ", ".join(f"{runs['lake'][r] / runs['file 2.x'][r]:.2f}" for r in rounds)
        rows = next(run["rows"] for run in results["end_to_end"] if run["kind"] == kind)
        lines.append(
            f"| {kind} | {rows:,} | {len(rounds)} | {file2:,.0f} | {file15:,.0f} | {lake:,.0f} | {lake / file2:.2f} |"
            f" {each} | {lake / file15:.2f} |"
        )
    lines += ["", "## Commit to visible", "", "| reader | jobs | p50 s | p95 s | max s |", "|---|---|---|---|---|"]
    for seen in results["visibility"]:
        reader = "attached to the lake" if seen["backend"] == "lake" else "the file's analysts' copy"
        lines.append(
            f"| {reader} | {seen['jobs']} | {seen['p50_seconds']:.3f} | {seen['p95_seconds']:.3f} |"
            f" {seen['max_seconds']:.3f} |"
        )
    lines += [
        "",
        "## Writers: ten organizations of 1,000-row jobs",
        "",
        "| appliers | jobs | jobs/s |",
        "|---|---|---|",
    ]
    for run in results["writers"]:
        lines.append(f"| {run['appliers']} | {run['jobs']} | {run['jobs_per_second']:.1f} |")
    one, two = (run["jobs_per_second"] for run in results["writers"])
    lines += ["", f"Two appliers against one: {two / one:.2f}x.", ""]
    kept = results["maintenance"]
    lines += [
        f"## Maintenance after {kept['jobs']:,} small commits ({kept['commit_seconds']:.1f} s to commit them)",
        "",
        "| | active data files | Parquet files on disk | analyst query s |",
        "|---|---|---|---|",
    ]
    for when in ("before", "after"):
        state = kept[when]
        lines.append(
            f"| {when} maintenance | {state['active_data_files']} | {state['files_on_disk']} |"
            f" {state['query_seconds']:.3f} |"
        )
    lines += ["", f"Maintenance took {kept['maintain_seconds']:.1f} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
