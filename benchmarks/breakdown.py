"""The stage breakdown: the worker's own functions, called in process and timed one by one.

The chain is the one a job goes through: accept the body (what the API does before its 202: for a large
JSON body, check, count and keep it; for any other, decode and stage it as Parquet), then prepare it
(service/prepare.py): read and validate it (a kept body streamed by DuckDB while the chunk before is
validated; a staged one loaded and validated in the worker's chunks), transform, write the prepared
files; then apply it (service/apply.py): read the prepared files and merge them in one transaction into
a warehouse that already holds the previous batch, so the re-used keys update; then publish the
analysts' copy. The same batch is merged once more (a re-import: every row updates) and
timed apart, as `remerge`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from benchmarks.measure import Stopwatch
from contracts.common import Contract, Validated
from service import warehouse
from service.job import JobRecord, iso, utc_now
from service.job_files import JobFiles
from service.kinds import KINDS
from service.prepare import (
    read_prepared,
    staged_text_bytes,
    validate_chunks,
    validate_in_chunks,
    validation_chunk_rows,
    write_prepared,
)
from service.settings import Settings
from service.staging import stage_body
from service.staging.large_json import Chunk, read_kept_body
from transforms import Prepared

ORGANIZATION = "bench"
STAGES = ("accept", "read+validate", "transform", "write prepared", "merge", "publish")


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


def _prepare(
    contract: Contract, body: bytes, files: JobFiles, clock: Stopwatch
) -> tuple[int, Validated, Prepared, int]:
    """Accept, then prepare as a worker does; (rows, validated, prepared, failed rows)."""
    files.directory.mkdir(parents=True, exist_ok=True)
    files.body.write_bytes(body)  # stage_body blanks the bytes around the array in place: a copy each time
    lines_path = files.lines if contract.has_lines else None
    settings = Settings()
    with clock.stage("accept"):
        staged = stage_body(
            contract, files.body, files.rows, lines_path, kept_path=files.upload, keep_from_rows=settings.group_max_rows
        )
    errors: list[pl.DataFrame] = []
    with clock.stage("read+validate"):
        if staged.body_kept:

            def validate(chunks: Iterator[Chunk]) -> Validated:
                errors.clear()  # a body read again starts over
                return validate_chunks(contract, chunks, staged.row_count, lambda found, _: errors.append(found))

            chunk_rows = validation_chunk_rows(settings, staged.row_count, files.upload.stat().st_size)
            validated = read_kept_body(contract, files.upload, chunk_rows, validate)
        else:
            rows = pl.scan_parquet(files.rows)
            lines = pl.scan_parquet(lines_path) if lines_path is not None else None
            text_bytes = staged_text_bytes([files.rows, *([lines_path] if lines_path is not None else [])])
            chunk_rows = validation_chunk_rows(settings, staged.row_count, text_bytes)
            validated = validate_in_chunks(contract, rows, lines, chunk_rows, errors.append)
    with clock.stage("transform"):
        prepared = KINDS[contract.kind].prepare(validated, ORGANIZATION)
    with clock.stage("write prepared"):
        write_prepared(files, prepared)
    failed = sum(frame.get_column("row").n_unique() for frame in errors)
    return staged.row_count, validated, prepared, failed


def _record(kind: str, job_id: str, rows: int, failed: int) -> JobRecord:
    now = iso(utc_now())
    return JobRecord(job_id, ORGANIZATION, kind, "PROCESSING", rows, now, failed_count=failed, started_at=now)


def _merge(live: warehouse.Warehouse, files: JobFiles, record: JobRecord) -> None:
    """What a lane does with a prepared job: read its files, merge them in one transaction."""
    kind = KINDS[record.kind]
    prepared = read_prepared(files, kind.contract.has_lines)
    with live.cursor() as con:
        warehouse.apply_jobs(con, kind.tables, [(prepared, record)])


def run_breakdown(kind: str, body: bytes, previous: bytes, directory: Path) -> Breakdown:
    """Seed the warehouse with `previous` (untimed), then time every stage of `body`."""
    contract = KINDS[kind].contract
    directory.mkdir(parents=True, exist_ok=True)
    warehouse_path = directory / "warehouse.duckdb"
    analytics_path = directory / "analytics.duckdb"

    staging = directory / "staging"
    seed_files, job_files = (JobFiles.of(staging, ORGANIZATION, c * 32) for c in "01")
    live = warehouse.Warehouse(directory, warehouse_path)
    assert live.try_hold()
    try:
        seed_rows, _, previous_prepared, seed_failed = _prepare(contract, previous, seed_files, Stopwatch())
        _merge(live, seed_files, _record(kind, seed_files.job_id, seed_rows, seed_failed))

        clock = Stopwatch()
        row_count, _, prepared, failed = _prepare(contract, body, job_files, clock)
        with clock.stage("merge"):
            _merge(live, job_files, _record(kind, job_files.job_id, row_count, failed))
        with clock.stage("publish"):
            live.publish(analytics_path)
        warehouse_bytes = warehouse_path.stat().st_size
        # The same job again: every key exists now, and half of them sit in the table in another order than
        # the batch's (the seed's rows first, then this batch's inserts), as in any warehouse after a while.
        remerge = Stopwatch()
        with remerge.stage("merge"):
            _merge(live, job_files, _record(kind, "2" * 32, row_count, failed))
    finally:
        live.release()
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
