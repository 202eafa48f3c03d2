"""Staging a small JSON body in the API's process: from msgspec's decoding against DuckDB's reader.

For each kind, a 1,000-row body is staged both ways (`stage_body` with and without the decoded path),
alternating, and the CPU time of each staging is taken (DuckDB's threads included); the median of the
rounds is reported, with the ratio. A small job's staging is part of what each small job costs the API.
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.generators import BatchSpec, generate_body
from service.kinds import KINDS
from service.staging import stage_body
from service.staging.small_json import DECODED_UP_TO_BYTES

ROWS = 1_000


@dataclass(frozen=True)
class SmallStaging:
    kind: str
    rows: int
    body_bytes: int
    decoded_ms: float
    duckdb_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duckdb_over_decoded": self.duckdb_ms / self.decoded_ms}


def run_small_staging(kind: str, work: Path, rounds: int = 30, rows: int = ROWS) -> SmallStaging:
    contract = KINDS[kind].contract
    body = generate_body(BatchSpec(kind, rows))
    work.mkdir(parents=True, exist_ok=True)
    lines = work / "lines.parquet" if contract.has_lines else None
    cpu: dict[int, list[float]] = {DECODED_UP_TO_BYTES: [], 0: []}
    try:
        for _ in range(rounds + 1):  # the first round warms up, untimed
            for decoded_up_to, times in cpu.items():
                path = work / "body.json"
                path.write_bytes(body)  # stage_body blanks the bytes around the array in place
                started = time.process_time()
                stage_body(contract, path, work / "rows.parquet", lines, decoded_up_to=decoded_up_to)
                times.append(time.process_time() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    decoded, duckdb = (statistics.median(times[1:]) * 1000 for times in cpu.values())
    return SmallStaging(kind, rows, len(body), decoded, duckdb)
