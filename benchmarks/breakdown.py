"""The stage breakdown: the worker's own functions, called in process and timed one by one.

The chain is the one `service.jobs.run_import` runs: stage the body (decode + Parquet), load it,
cast + validate (in the worker's chunks), transform, merge (one transaction into a warehouse that
already holds the previous batch, so the re-used keys update), publish the analysts' copy. Then the
same batch is merged once more (a re-import: every row updates) and timed apart, as `remerge`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from benchmarks.measure import Stopwatch
from contracts import CONTRACTS
from contracts.common import Contract, Validated
from service import jobs, warehouse
from service.staging import stage_body
from transforms import PREPARERS, Prepared

ORGANIZATION = "bench"
STAGES = ("decode+stage", "load", "cast+validate", "transform", "merge", "publish")


@dataclass
class Breakdown:
    """Seconds per stage for one batch, plus what the dlt best case is fed (kept out of the results file)."""

    kind: str
    rows: int
    seconds: dict[str, float]
    accepted_rows: int
    failed_rows: int
    warehouse_bytes: int
    remerge_seconds: float
    """The same batch merged again: every row updates, in another order than the table's."""
    prepared: Prepared = field(repr=False)
    previous_prepared: Prepared = field(repr=False)


def _prepare(contract: Contract, body: bytes, directory: Path, clock: Stopwatch) -> tuple[int, Validated, Prepared]:
    directory.mkdir(parents=True, exist_ok=True)
    body_path = directory / "body.json"
    body_path.write_bytes(body)  # stage_body blanks the bytes around the array in place: a copy each time
    rows_path = directory / "rows.parquet"
    lines_path = directory / "lines.parquet" if contract.has_lines else None
    with clock.stage("decode+stage"):
        staged = stage_body(contract, body_path, rows_path, lines_path)
    with clock.stage("load"):
        rows = pl.read_parquet(rows_path)
        lines = pl.read_parquet(lines_path) if lines_path is not None else None
    with clock.stage("cast+validate"):
        validated = jobs.validate_in_chunks(contract, rows.lazy(), lines.lazy() if lines is not None else None)
    with clock.stage("transform"):
        prepared = PREPARERS[contract.kind](validated, ORGANIZATION)
    shutil.rmtree(directory)
    return staged.row_count, validated, prepared


def _outcome(kind: str, job_id: str, rows: int, failed: int) -> warehouse.JobOutcome:
    now = datetime.now()
    return warehouse.JobOutcome(
        job_id=job_id,
        organization_id=ORGANIZATION,
        kind=kind,
        status="COMPLETED",
        row_count=rows,
        processed_count=rows,
        failed_count=failed,
        created_at=now,
        started_at=now,
        completed_at=now,
    )


def run_breakdown(kind: str, body: bytes, previous: bytes, directory: Path) -> Breakdown:
    """Seed the warehouse with `previous` (untimed), then time every stage of `body`."""
    contract = CONTRACTS[kind]
    directory.mkdir(parents=True, exist_ok=True)
    warehouse_path = directory / "warehouse.duckdb"
    analytics_path = directory / "analytics.duckdb"

    seed_clock = Stopwatch()
    seed_rows, seed_validated, previous_prepared = _prepare(contract, previous, directory / "seed", seed_clock)
    with warehouse.open_warehouse(warehouse_path) as con:
        failed = seed_validated.errors.get_column("row").n_unique()
        warehouse.apply_job(con, previous_prepared, _outcome(kind, "0" * 32, seed_rows, failed), datetime.now())

    clock = Stopwatch()
    row_count, validated, prepared = _prepare(contract, body, directory / "job", clock)
    failed = validated.errors.get_column("row").n_unique()
    with clock.stage("merge"), warehouse.open_warehouse(warehouse_path) as con:
        warehouse.apply_job(con, prepared, _outcome(kind, "1" * 32, row_count, failed), datetime.now())
    with clock.stage("publish"):
        warehouse.publish(warehouse_path, analytics_path)
    warehouse_bytes = warehouse_path.stat().st_size
    # The same job again: every key exists now, and half of them sit in the table in another order than
    # the batch's (the seed's rows first, then this batch's inserts), as in any warehouse after a while.
    remerge = Stopwatch()
    with remerge.stage("merge"), warehouse.open_warehouse(warehouse_path) as con:
        warehouse.apply_job(con, prepared, _outcome(kind, "2" * 32, row_count, failed), datetime.now())
    shutil.rmtree(directory)
    return Breakdown(
        kind=kind,
        rows=row_count,
        seconds=clock.seconds,
        accepted_rows=row_count - failed,
        failed_rows=failed,
        warehouse_bytes=warehouse_bytes,
        remerge_seconds=remerge.seconds["merge"],
        prepared=prepared,
        previous_prepared=previous_prepared,
    )
