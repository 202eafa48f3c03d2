"""What one apply transaction costs, by how many small jobs it merges: the applier's fixed cost per run.

The applier merges a run of small jobs in one transaction, with the ready runs of other organizations
(service/apply.py). Here runs of 1, 2, 4 and 8 prepared 1,000-row inventory jobs, of one organization
and then of as many organizations, are applied with `warehouse.apply_jobs` in the benchmark's process,
into a warehouse file of its own, and the CPU of each transaction is taken (DuckDB's threads included);
the median per run is reported, per transaction and per job.
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.generators import BatchSpec, generate_body
from contracts.common import validate
from service import warehouse
from service.job import JobRecord, iso, utc_now
from service.kinds import KINDS
from service.staging import stage_body

RUN_SIZES = (1, 2, 4, 8)
RUNS = [(size, 1) for size in RUN_SIZES] + [(size, size) for size in RUN_SIZES[1:]]
"""(jobs, organizations) of each run measured: one organization's jobs, then one job of each of several."""
ROWS = 1_000
KIND = "inventory"
ORGANIZATION = "bench"


@dataclass(frozen=True)
class ApplyRun:
    jobs: int
    organizations: int
    rows_per_job: int
    transaction_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_job_ms": self.transaction_ms / self.jobs}


def run_apply_runs(work: Path, rounds: int = 8) -> list[ApplyRun]:
    contract, kind = KINDS[KIND].contract, KINDS[KIND]
    work.mkdir(parents=True, exist_ok=True)
    live = warehouse.Warehouse(work, work / "warehouse.duckdb")
    if not live.try_hold():
        raise RuntimeError(f"the warehouse in {work} is held by another process")
    try:
        validated = []
        for seed in range(max(RUN_SIZES)):  # other keys in each job of a run, as other requests send
            body = work / "body.json"
            body.write_bytes(generate_body(BatchSpec(KIND, ROWS, seed=seed)))
            staged = stage_body(contract, body, work / "rows.parquet", None)
            validated.append(validate(contract, pl.read_parquet(staged.rows_path)))
        found, count = [], 0
        for size, organizations in RUNS:
            cpu = []
            for _ in range(rounds + 1):  # the first round warms up, untimed
                jobs = []
                for index in range(size):
                    count += 1
                    now = iso(utc_now())
                    owner = f"{ORGANIZATION}-{index % organizations}"
                    record = JobRecord(f"{count:032x}", owner, KIND, "PROCESSING", ROWS, now, started_at=now)
                    jobs.append((kind.prepare(validated[index], owner), record))
                with live.cursor() as con:
                    started = time.process_time()
                    warehouse.apply_jobs(con, kind.tables, jobs)
                    cpu.append(time.process_time() - started)
            found.append(ApplyRun(size, organizations, ROWS, statistics.median(cpu[1:]) * 1000))
        return found
    finally:
        live.release()
        shutil.rmtree(work, ignore_errors=True)
