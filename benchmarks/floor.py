"""The floor: the least any importer must do with the same body, timed in the same run.

Decode the JSON into a frame and append it, as it is, to an empty DuckDB table: no validation, no
key, no merge, no lineage. Two ways are measured, Polars `read_json` then a DuckDB append, and
DuckDB's own `read_json` straight into the table; the faster one is the floor, so that a ratio
against it is never flattered by a slow baseline. Polars cannot frame a column that mixes objects
and strings (a bad row can send one): for such a body only DuckDB's way counts.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import msgspec
import polars as pl

from benchmarks.generators import ARRAY_KEYS
from benchmarks.measure import Stopwatch


@dataclass(frozen=True)
class Floor:
    rows: int
    msgspec_decode_seconds: float
    """JSON to Python objects, nothing else (msgspec, the fastest decoder in Python)."""
    polars_decode_seconds: float | None
    """JSON to a Polars frame; None when Polars could not frame this body."""
    polars_append_seconds: float | None
    duckdb_seconds: float
    """DuckDB read_json into a new table, decode and append in one statement."""

    @property
    def polars_seconds(self) -> float | None:
        if self.polars_decode_seconds is None or self.polars_append_seconds is None:
            return None
        return self.polars_decode_seconds + self.polars_append_seconds

    @property
    def seconds(self) -> float:
        return min(s for s in (self.polars_seconds, self.duckdb_seconds) if s is not None)

    @property
    def method(self) -> str:
        return "polars+append" if self.polars_seconds == self.seconds else "duckdb read_json"

    @property
    def decode_seconds(self) -> float:
        """The fastest decode of the body: what the time to 202 is compared with."""
        return min(s for s in (self.msgspec_decode_seconds, self.polars_decode_seconds) if s is not None)


def _polars_floor(body: bytes, array_key: str, directory: Path) -> tuple[float, float] | None:
    clock = Stopwatch()
    try:
        with clock.stage("decode"):
            frame = pl.read_json(io.BytesIO(body)).select(pl.col(array_key).explode()).unnest(array_key)
    except pl.exceptions.ComputeError:
        return None
    con = duckdb.connect(str(directory / "floor-polars.duckdb"))
    con.register("frame", frame)
    con.execute("CREATE TABLE rows AS SELECT * FROM frame LIMIT 0")
    with clock.stage("append"):
        con.execute("INSERT INTO rows SELECT * FROM frame")
        con.close()  # the checkpoint to disk belongs to an append, as it does to a merge
    return clock.seconds["decode"], clock.seconds["append"]


def _duckdb_floor(body: bytes, array_key: str, directory: Path) -> float:
    body_path = directory / "body.json"
    body_path.write_bytes(body)
    clock = Stopwatch()
    con = duckdb.connect(str(directory / "floor-duckdb.duckdb"))
    with clock.stage("read"):
        # The body is one object: its array is read as one list value, then unnested into rows.
        con.execute(
            f"CREATE TABLE rows AS SELECT unnest({array_key}, max_depth := 2) FROM read_json('{body_path}',"
            f" maximum_object_size = {max(len(body) + 1, 1 << 24)})"
        )
        con.close()
    return clock.seconds["read"]


def run_floor(kind: str, body: bytes, rows: int, directory: Path) -> Floor:
    directory.mkdir(parents=True, exist_ok=True)
    array_key = ARRAY_KEYS[kind]
    clock = Stopwatch()
    with clock.stage("msgspec"):
        decoded = msgspec.json.decode(body)
    del decoded
    polars = _polars_floor(body, array_key, directory)
    duckdb_seconds = _duckdb_floor(body, array_key, directory)
    shutil.rmtree(directory)
    return Floor(
        rows=rows,
        msgspec_decode_seconds=clock.seconds["msgspec"],
        polars_decode_seconds=polars[0] if polars else None,
        polars_append_seconds=polars[1] if polars else None,
        duckdb_seconds=duckdb_seconds,
    )
