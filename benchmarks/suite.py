"""One benchmark run: for each kind and size, the stages, the floor, the peers and the service end to end.

Everything for one (kind, size) runs back to back on the same generated body, so each ratio is taken
on the same machine state. The sampled peers (per-row, dlt fed dicts) run once per kind on the first
rows of the batch; dlt's best case runs on the whole batch at every size.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.apply_runs import run_apply_runs
from benchmarks.breakdown import run_breakdown
from benchmarks.concurrency import run_fairness, run_scaling
from benchmarks.end_to_end import import_end_to_end, run_job_stream, running_service
from benchmarks.floor import run_floor
from benchmarks.generators import KINDS, BatchSpec, write_body
from benchmarks.measure import rate
from benchmarks.peers import PeerRun, dlt_available, run_dlt_arrow, run_dlt_dicts, run_per_row
from benchmarks.small_staging import ROWS as SMALL_STAGING_ROWS
from benchmarks.small_staging import run_small_staging
from benchmarks.sql_peers import DELETE_INSERT, MERGE, run_sql_peer
from service.settings import get_settings

DEFAULT_SIZES = (100_000, 1_000_000)
LARGE_SIZE = 10_000_000
RESULTS_DIR = Path(__file__).parent / "results"
SOCKET_PATH_LIMIT = 100


@dataclass(frozen=True)
class Options:
    sizes: tuple[int, ...] = DEFAULT_SIZES
    kinds: tuple[str, ...] = KINDS
    seed: int = 7
    bad_share: float = 0.01
    existing_share: float = 0.5
    peers: bool = True
    end_to_end: bool = True
    per_row_sample: int = 1_000
    dlt_sample: int = 20_000
    stream_jobs: int = 30
    stream_rows: int = 1_000
    concurrency: bool = True
    """The fairness and worker-scaling runs (benchmarks/concurrency.py)."""
    fairness_rows: int = 3_000_000
    scaling_workers: tuple[int, ...] = (1, 2, 4)
    scaling_jobs: int = 10
    """1,000-row jobs each of the ten organizations posts in the scaling run."""
    large_warehouse_rows: int = 10_000_000
    """Inventory rows in the warehouse before the ten organizations' small jobs of the last run (0: no run)."""
    large_warehouse_jobs: int = 20
    """Small jobs each of the ten organizations posts into that warehouse."""
    small_staging_rounds: int = 30
    """Rounds of staging a 1,000-row body each way, per kind (benchmarks/small_staging.py)."""
    apply_rounds: int = 8
    """Transactions timed per run size (benchmarks/apply_runs.py)."""
    work_dir: Path | None = None
    """Where bodies, staging and scratch warehouses go (a temporary directory inside it, removed after)."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in ("polars", "duckdb", "pandera", "litestar", "rq", "dlt", "pydantic"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def _commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@contextlib.contextmanager
def _service_directory(work: Path) -> Iterator[Path]:
    """The service's data directory, removed after. The embedded Redis listens on a unix socket under
    it, and socket paths are limited to 107 bytes: a deep work directory falls back to the system one."""
    if len(str(work / "service" / "redis" / "redis.sock")) <= SOCKET_PATH_LIMIT:
        (work / "service").mkdir()
        try:
            yield work / "service"
        finally:
            shutil.rmtree(work / "service", ignore_errors=True)
        return
    with tempfile.TemporaryDirectory(prefix="stockyard-e2e-") as short:
        yield Path(short)


def _peer_dict(run: PeerRun) -> dict[str, Any]:
    return {**asdict(run), "rows_per_second": run.rows_per_second}


def _sampled_peers(spec: BatchSpec, options: Options, work: Path) -> dict[str, PeerRun]:
    """The slow peers, once per kind, on the first rows of the batch."""
    sampled: dict[str, PeerRun] = {}
    if not options.peers:
        return sampled
    _say(f"[{spec.kind}] per-row importer on {min(options.per_row_sample, spec.rows):,} rows")
    sampled["per-row"] = run_per_row(spec.sample(options.per_row_sample), work / "per-row")
    if dlt_available():
        _say(f"[{spec.kind}] dlt fed dicts on {min(options.dlt_sample, spec.rows):,} rows")
        sampled["dlt dicts"] = run_dlt_dicts(spec.sample(options.dlt_sample), work / "dlt-dicts")
    return sampled


def _run_one(
    spec: BatchSpec, options: Options, work: Path, sampled: dict[str, PeerRun], stream: bool, notes: list[str]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    label = f"[{spec.kind} {spec.rows:,}]"
    body_path, previous_path = work / "body.json", work / "previous.json"
    _say(f"{label} generating")
    with open(body_path, "wb") as sink:
        write_body(spec, sink)
    with open(previous_path, "wb") as sink:
        write_body(spec, sink, previous=True)
    body = body_path.read_bytes()

    _say(f"{label} stage breakdown")
    breakdown = run_breakdown(spec.kind, body, previous_path.read_bytes(), work / "breakdown")
    _say(f"{label} floor")
    floor = run_floor(spec.kind, body, spec.rows, work / "floor")
    unframed = [name for name, found in floor.methods.items() if found is None]
    if unframed:
        notes.append(f"{spec.kind}: {', '.join(unframed)} could not frame the body, so the floor leaves them out")
    peers = {name: _peer_dict(run) for name, run in sampled.items()}
    for name in (MERGE, DELETE_INSERT):
        _say(f"{label} {name}")
        peer = run_sql_peer(name, spec.kind, body_path, previous_path, spec.rows, work / "sql-peer")
        peers[name] = {**asdict(peer), "rows_per_second": peer.rows_per_second}
    if options.peers and dlt_available():
        _say(f"{label} dlt fed validated Arrow")
        merged_rows = breakdown.prepared.rows.height
        arrow = run_dlt_arrow(spec.kind, merged_rows, breakdown.previous_prepared, breakdown.prepared, work / "dlt")
        peers["dlt arrow"] = _peer_dict(arrow)
    del body
    prepared_rows = breakdown.prepared.rows.height
    breakdown_seconds = dict(breakdown.seconds)
    breakdown_summary = {
        "accepted_rows": breakdown.accepted_rows,
        "failed_rows": breakdown.failed_rows,
        "merged_rows": prepared_rows,
        "warehouse_bytes": breakdown.warehouse_bytes,
        "remerge_seconds": breakdown.remerge_seconds,
        "remerge_rows_per_second": rate(prepared_rows, breakdown.remerge_seconds),
    }
    del breakdown
    gc.collect()

    end_to_end: dict[str, Any] | None = None
    job_stream: dict[str, Any] | None = None
    if options.end_to_end:
        _say(f"{label} end to end over HTTP")
        with _service_directory(work) as data_dir, running_service(data_dir) as service:
            measured = import_end_to_end(service, spec.kind, body_path, previous_path)
            end_to_end = {**asdict(measured), "rows_per_second": rate(measured.rows, measured.completed_seconds)}
            if not measured.peak_rss_reset:
                notes.append("peak RSS could not be reset before the measured job: peaks count from process start")
            if stream:
                _say(f"{label} {options.stream_jobs} small jobs of {options.stream_rows:,} rows")
                small = BatchSpec(spec.kind, options.stream_rows, seed=spec.seed, existing_share=0.0)
                found = run_job_stream(service, small, options.stream_jobs)
                job_stream = {**asdict(found), "jobs_per_second": found.jobs_per_second}

    run = {
        "kind": spec.kind,
        "rows": spec.rows,
        "body_bytes": body_path.stat().st_size,
        **breakdown_summary,
        "stages": breakdown_seconds,
        "stages_seconds": sum(breakdown_seconds.values()),
        "stage_rows_per_second": {stage: rate(spec.rows, s) for stage, s in breakdown_seconds.items()},
        "floor": {**floor.as_dict(), "rows_per_second": rate(spec.rows, floor.seconds)},
        "peers": peers,
        "end_to_end": end_to_end,
    }
    run["ratios"] = report.run_ratios(run)
    return run, job_stream


def _concurrency(options: Options, work: Path) -> dict[str, Any]:
    """Fairness while a large job runs, small jobs of ten organizations against 1, 2, 4 workers, and into a
    large warehouse."""
    _say(f"[concurrency] fairness: {options.fairness_rows:,}-row job, small jobs of five organizations")
    fairness = run_fairness(work, options.fairness_rows, options.seed)
    scaling = []
    for workers in options.scaling_workers:
        _say(f"[concurrency] {options.scaling_jobs * 10} small jobs of ten organizations, {workers} worker(s)")
        scaling.append(run_scaling(work, workers, options.scaling_jobs, options.seed).as_dict())
    found: dict[str, Any] = {"fairness": fairness.as_dict(), "scaling": scaling}
    if options.large_warehouse_rows:
        rows, jobs = options.large_warehouse_rows, options.large_warehouse_jobs
        _say(f"[concurrency] {jobs * 10} small jobs of ten organizations into a {rows:,}-row warehouse")
        found["large_warehouse"] = run_scaling(work, None, jobs, options.seed, warehouse_rows=rows).as_dict()
    return found


@contextlib.contextmanager
def _in_process_data_dir(directory: Path) -> Iterator[None]:
    """The data directory of the stages run in this process: where DuckDB spills a large body (the
    service's own directory is `running_service`'s; its environment leaves STOCKYARD_* out)."""
    directory.mkdir(parents=True)
    before = os.environ.get("STOCKYARD_DATA_DIR")
    os.environ["STOCKYARD_DATA_DIR"] = str(directory)
    get_settings.cache_clear()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("STOCKYARD_DATA_DIR", None)
        else:
            os.environ["STOCKYARD_DATA_DIR"] = before
        get_settings.cache_clear()


def run_suite(options: Options) -> report.Results:
    """Run every benchmark the options ask for and return the results (see report.py for the outputs)."""
    unknown = set(options.kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    sizes = sorted(set(options.sizes))
    notes: list[str] = []
    meta: dict[str, Any] = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "load_before": _load(),
        "versions": _versions(),
        "sizes": sizes,
        "kinds": list(options.kinds),
        "seed": options.seed,
        "bad_share": options.bad_share,
        "existing_share": options.existing_share,
        "per_row_sample": options.per_row_sample,
        "dlt_sample": options.dlt_sample,
    }
    if options.peers and not dlt_available():
        notes.append("dlt is not installed (the optional `bench` extra): its figures are skipped")
    if not options.peers:
        notes.append("peers skipped (--skip-peers)")
    if sizes[-1] < 1_000_000:
        notes.append(
            "issue 4 states its targets at 1M rows (10M for linearity and memory); this run's largest size is "
            f"{sizes[-1]:,}, so fixed costs weigh more than they would there"
        )
    stream_kind = "inventory" if "inventory" in options.kinds else options.kinds[0]
    runs: list[dict[str, Any]] = []
    job_stream: dict[str, Any] | None = None
    started = time.perf_counter()
    (options.work_dir or Path(tempfile.gettempdir())).mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="stockyard-bench-", dir=options.work_dir) as scratch,
        _in_process_data_dir(Path(scratch) / "in-process"),
    ):
        work = Path(scratch)
        for kind in options.kinds:
            largest = BatchSpec(kind, sizes[-1], options.seed, options.bad_share, options.existing_share)
            sampled = _sampled_peers(largest, options, work)
            for size in sizes:
                spec = BatchSpec(kind, size, options.seed, options.bad_share, options.existing_share)
                stream = options.end_to_end and kind == stream_kind and size == sizes[-1]
                run, found_stream = _run_one(spec, options, work, sampled, stream, notes)
                runs.append(run)
                job_stream = found_stream or job_stream
        small_staging = []
        for kind in options.kinds:
            _say(f"[{kind}] staging a {SMALL_STAGING_ROWS:,}-row body: decoded, and by DuckDB")
            found = run_small_staging(kind, work / "small-staging", options.small_staging_rounds)
            small_staging.append(found.as_dict())
        _say("[apply] one transaction of 1, 2, 4 and 8 small jobs")
        apply_runs = [run.as_dict() for run in run_apply_runs(work / "apply-runs", options.apply_rounds)]
        concurrency = _concurrency(options, work) if options.concurrency else None
    meta["load_after"] = _load()
    meta["seconds"] = time.perf_counter() - started
    publish = [
        {
            "kind": run["kind"],
            "rows": run["rows"],
            "warehouse_bytes": run["warehouse_bytes"],
            "seconds": run["stages"]["publish"],
        }
        for run in runs
    ]
    results: report.Results = {
        "meta": meta,
        "runs": runs,
        "linearity": report.linearity(runs),
        "job_stream": job_stream,
        "publish": publish,
        "small_staging": small_staging,
        "apply_runs": apply_runs,
        "concurrency": concurrency,
        "notes": list(dict.fromkeys(notes)),
    }
    results["targets"] = [target.as_dict() for target in report.evaluate_targets(results)]
    return results
