"""Staging's promise to the worker: the staged rows are in `__row` order, however DuckDB wrote them."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.generators import BatchSpec, write_body
from contracts.common import ROW
from service import staging
from service.kinds import KINDS


def test_a_large_json_body_is_staged_in_row_order(tmp_path: Path) -> None:
    """More rows than DuckDB writes in one row group, read by two threads, with bad rows among them."""
    body = tmp_path / "body.json"
    with open(body, "wb") as handle:
        write_body(BatchSpec("inventory", 300_000, bad_share=0.01), handle)
    assert body.stat().st_size >= staging.UNORDERED_FROM_BYTES  # staged without keeping insertion order
    staged = staging.stage_body(KINDS["inventory"].contract, body, tmp_path / "rows.parquet", None)
    assert staged.row_count == 300_000
    rows = pq.read_table(staged.rows_path, columns=[ROW]).column(0).to_pylist()
    assert rows == list(range(300_000))


def test_rows_written_out_of_order_are_sorted(tmp_path: Path) -> None:
    order = list(range(50_000))
    random.Random(3).shuffle(order)
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({ROW: order, "skuId": [f'"S{i}"' for i in order]}), path, row_group_size=8_000)
    with staging.staging_database(ordered=False) as con:
        staging._ensure_row_order(con, path)
    table = pq.read_table(path)
    assert table.column(ROW).to_pylist() == list(range(50_000))
    assert table.column("skuId").to_pylist() == [f'"S{i}"' for i in range(50_000)]  # each row kept whole
    assert [p.name for p in tmp_path.iterdir()] == ["rows.parquet"]


def test_rows_in_order_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({ROW: [0, 1, 5, 9]}), path, row_group_size=2)
    before = path.stat()
    with staging.staging_database(ordered=False) as con:
        staging._ensure_row_order(con, path)
    assert path.stat().st_ino == before.st_ino and path.stat().st_mtime_ns == before.st_mtime_ns
