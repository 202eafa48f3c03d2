"""The floor: the fastest known way to decode the same body into a frame and append it, timed in the same run.

No validation, no key, no merge, no lineage: the least any importer must do. Every way below is measured
on the body and the fastest one per kind is the floor (its name is reported), so that a ratio against
it is never flattered by a slow baseline:

- orjson or msgspec into Python objects, then `pl.from_dicts` with the contract's schema (every value
  as text, lines as a list of structs);
- Polars' `read_json`, then its array exploded into rows;
- PyArrow's JSON reader (the body is one JSON object: one block as large as the body);
- DuckDB's `read_json` straight into the table, decode and append in one statement.

Each frame is appended to an empty table of a new DuckDB file, closed (its checkpoint) as a merge is.
A way that cannot frame a body (Polars, when a bad row mixes an object into a text field) is left out.
"""

from __future__ import annotations

import gc
import io
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.json as pa_json

from benchmarks.generators import ARRAY_KEYS
from benchmarks.measure import Stopwatch
from contracts.common import WireField
from service.kinds import KINDS

DUCKDB = "duckdb read_json"


@dataclass(frozen=True)
class Floor:
    rows: int
    methods: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    """Each way: (decode into a frame, append) seconds; None where it could not frame the body."""
    objects_decode_seconds: float = 0.0
    """The body into Python objects, nothing else (the faster of orjson and msgspec)."""

    def _total(self, name: str) -> float | None:
        found = self.methods.get(name)
        return None if found is None else found[0] + found[1]

    @property
    def seconds(self) -> float:
        return min(total for name in self.methods if (total := self._total(name)) is not None)

    @property
    def method(self) -> str:
        return next(name for name in self.methods if self._total(name) == self.seconds)

    @property
    def append_seconds(self) -> float | None:
        """The append of the fastest way that appends a frame (DuckDB's reads and appends in one)."""
        framed = [found for name, found in self.methods.items() if found is not None and name != DUCKDB]
        return min(framed, key=sum)[1] if framed else None

    @property
    def decode_seconds(self) -> float:
        """The fastest decode of the body, into objects or a frame: what the time to 202 is compared with."""
        decodes = [found[0] for name, found in self.methods.items() if found is not None and name != DUCKDB]
        return min([self.objects_decode_seconds, *decodes])

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "methods": {
                name: None if found is None else {"decode": found[0], "append": found[1]}
                for name, found in self.methods.items()
            },  # fmt: skip
            "objects_decode_seconds": self.objects_decode_seconds,
            "seconds": self.seconds,
            "method": self.method,
            "append_seconds": self.append_seconds,
            "decode_seconds": self.decode_seconds,
        }


def frame_schema(kind: str) -> dict[str, pl.DataType]:
    """The contract's fields as from_dicts takes them, every value as text (as Stockyard stages it):
    from_dicts fails a Float64 column on the numeric strings a body may carry, whatever `strict` says."""
    contract = KINDS[kind].contract

    def dtypes(fields: tuple[WireField, ...]) -> dict[str, pl.DataType]:
        return {f.name: pl.String() for f in fields}

    schema = dtypes(contract.fields)
    if contract.has_lines:
        schema["lines"] = pl.List(pl.Struct(dtypes(contract.line_fields)))
    return schema


def _append(frame: pl.DataFrame | pa.Table, directory: Path, name: str) -> float:
    clock = Stopwatch()
    con = duckdb.connect(str(directory / f"floor-{name.replace(' ', '-')}.duckdb"))
    con.register("frame", frame)
    con.execute("CREATE TABLE rows AS SELECT * FROM frame LIMIT 0")
    with clock.stage("append"):
        con.execute("INSERT INTO rows SELECT * FROM frame")
        con.close()  # the checkpoint to disk belongs to an append, as it does to a merge
    return clock.seconds["append"]


def _timed(decode: Callable[[], pl.DataFrame | pa.Table], directory: Path, name: str) -> tuple[float, float] | None:
    clock = Stopwatch()
    try:
        with clock.stage("decode"):
            frame = decode()
    except (pl.exceptions.PolarsError, pa.ArrowInvalid, ValueError, TypeError):
        return None
    append = _append(frame, directory, name)
    del frame
    gc.collect()
    return clock.seconds["decode"], append


def _duckdb(body_path: Path, body_bytes: int, array_key: str, directory: Path) -> tuple[float, float]:
    clock = Stopwatch()
    con = duckdb.connect(str(directory / "floor-duckdb.duckdb"))
    with clock.stage("read"):
        # The body is one object: its array is read as one list value, then unnested into rows.
        con.execute(
            f"CREATE TABLE rows AS SELECT unnest({array_key}, max_depth := 2) FROM read_json('{body_path}',"
            f" maximum_object_size = {max(body_bytes + 1, 1 << 24)})"
        )
        con.close()
    return clock.seconds["read"], 0.0


def run_floor(kind: str, body: bytes, rows: int, directory: Path) -> Floor:
    directory.mkdir(parents=True, exist_ok=True)
    array_key = ARRAY_KEYS[kind]
    schema = frame_schema(kind)
    clock = Stopwatch()
    with clock.stage("orjson"):
        decoded = orjson.loads(body)
    del decoded
    with clock.stage("msgspec"):
        decoded = msgspec.json.decode(body)
    del decoded
    gc.collect()

    def from_objects(loads: Callable[[bytes], Any]) -> Callable[[], pl.DataFrame]:
        return lambda: pl.from_dicts(loads(body)[array_key], schema=schema, strict=False)

    def polars() -> pl.DataFrame:
        return pl.read_json(io.BytesIO(body)).select(pl.col(array_key).explode()).unnest(array_key)

    def pyarrow() -> pa.Table:
        options = pa_json.ReadOptions(block_size=len(body) + 1)
        table = pa_json.read_json(pa.BufferReader(body), read_options=options)
        return pa.Table.from_struct_array(table.column(array_key).combine_chunks().flatten())

    methods = {
        "orjson + from_dicts": _timed(from_objects(orjson.loads), directory, "orjson"),
        "msgspec + from_dicts": _timed(from_objects(msgspec.json.decode), directory, "msgspec"),
        "polars read_json": _timed(polars, directory, "polars"),
        "pyarrow read_json": _timed(pyarrow, directory, "pyarrow"),
    }
    body_path = directory / "body.json"
    body_path.write_bytes(body)
    methods[DUCKDB] = _duckdb(body_path, len(body), array_key, directory)
    shutil.rmtree(directory)
    return Floor(rows=rows, methods=methods, objects_decode_seconds=min(clock.seconds.values()))
