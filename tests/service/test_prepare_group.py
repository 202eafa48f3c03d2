"""Prepare's group of small jobs: transformed in one call, each comes out as if transformed alone; and its
prepared files, in one file or a file each, read back exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from benchmarks.generators import ARRAY_KEYS, KINDS, BatchSpec, generate_body
from contracts.common import ROW, validate
from service.job_files import JobFiles
from service.kinds import KINDS as REGISTRY
from service.prepare import (
    GROUP_ROW_STRIDE,
    has_prepared,
    is_transient,
    read_prepared,
    staged_text_bytes,
    transform_group,
    validation_chunk_rows,
    write_prepared,
)
from service.settings import Settings
from tests.frames import staged_lines, staged_rows, validate_elements
from transforms import Prepared


def _elements(kind: str, rows: int, seed: int) -> list[Any]:
    body = generate_body(BatchSpec(kind, rows=rows, seed=seed, bad_share=0.15))
    elements: list[Any] = json.loads(body)[ARRAY_KEYS[kind]]
    return elements


def _jobs(kind: str) -> list[tuple[str, list[Any]]]:
    """Jobs of two organizations sharing keys: repeats within a job, the same rows in other jobs, one job
    of bad rows only, and an empty one."""
    first, second = _elements(kind, 40, seed=3), _elements(kind, 30, seed=4)
    return [
        ("acme", first + first[5:12]),  # every key of 5..11 twice: the later ones win
        ("beta", first[:20] + second[:5]),  # the same keys for another organization
        ("acme", [{"unexpected": 1}, 5, None]),  # nothing valid
        ("beta", []),
        ("acme", second + second[::-3]),  # again the same organization, other repeats
    ]


def _group_validated(kind: str, jobs: list[tuple[str, list[Any]]]) -> Any:
    contract = REGISTRY[kind].contract

    def shifted(frames: list[pl.DataFrame]) -> pl.DataFrame:
        return pl.concat(
            [frame.with_columns(pl.col(ROW) + index * GROUP_ROW_STRIDE) for index, frame in enumerate(frames)],
            how="diagonal_relaxed",
        )

    rows = shifted([staged_rows(contract, elements) for _, elements in jobs])
    lines = shifted([staged_lines(contract, elements) for _, elements in jobs]) if contract.has_lines else None
    return validate(contract, rows, lines)


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(pl.all())


def _assert_same(got: Prepared, alone: Prepared) -> None:
    assert got.rows.equals(alone.rows)  # order too: the merge keeps the last of a key
    assert (got.lines is None) == (alone.lines is None)
    if got.lines is not None and alone.lines is not None:
        assert got.lines.equals(alone.lines)
    assert sorted(got.references) == sorted(alone.references)
    for table, frame in alone.references.items():  # stubs are a set: their order means nothing
        assert _sorted(got.references[table]).equals(_sorted(frame)), table
    assert got.warnings.equals(alone.warnings)


@pytest.mark.parametrize("kind", KINDS)
def test_a_group_transformed_at_once_equals_each_job_transformed_alone(kind: str) -> None:
    jobs = _jobs(kind)
    prepared = transform_group(kind, [organization for organization, _ in jobs], _group_validated(kind, jobs))

    assert len(prepared) == len(jobs)
    for (organization, elements), got in zip(jobs, prepared, strict=True):
        alone = REGISTRY[kind].prepare(validate_elements(kind, elements), organization)
        _assert_same(got, alone)
    repeats = prepared[0].warnings.filter(pl.col("code") == "duplicate_key")
    assert repeats.height >= 7 and repeats.get_column("row").is_between(0, 46).all()  # job 0's own numbers
    assert prepared[2].rows.is_empty() and prepared[3].rows.is_empty()


@pytest.mark.parametrize("in_one_file", [True, False], ids=["one file", "a file each"])
@pytest.mark.parametrize("kind", KINDS)
def test_prepared_files_read_back_exactly_as_written(kind: str, in_one_file: bool, tmp_path: Path) -> None:
    jobs = _jobs(kind)
    prepared = transform_group(kind, [organization for organization, _ in jobs], _group_validated(kind, jobs))
    has_lines = REGISTRY[kind].contract.has_lines
    for index, written in enumerate(prepared):
        files = JobFiles.of(tmp_path, "acme", f"{index:032x}")
        files.directory.mkdir(exist_ok=True)
        write_prepared(files, written, in_one_file=in_one_file)
        assert has_prepared(files, has_lines)
        read = read_prepared(files, has_lines)
        assert read.rows.equals(written.rows) and read.rows.schema == written.rows.schema
        assert (read.lines is None) == (written.lines is None)
        if read.lines is not None and written.lines is not None:
            assert read.lines.equals(written.lines) and read.lines.schema == written.lines.schema
        assert sorted(read.references) == sorted(written.references)
        for table, frame in written.references.items():
            assert read.references[table].equals(frame) and read.references[table].schema == frame.schema
        write_prepared(files, written, in_one_file=not in_one_file)  # tried again the other way
        assert read_prepared(files, has_lines).rows.equals(written.rows)
        assert files.prepared_all.exists() != in_one_file  # the first way's files are gone
        assert files.prepared_rows.exists() == in_one_file


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (
            duckdb.BinderException(
                "Failed to get data file list from DuckLake: server closed the connection unexpectedly"
            ),
            True,
        ),
        (
            duckdb.InvalidInputException("Failed to prepare query: could not connect to server: Connection refused"),
            True,
        ),
        (duckdb.IOException("Could not write file: No space left on device"), True),
        (duckdb.TransactionException("Transaction conflict: cannot delete from a table written meanwhile"), True),
        (duckdb.BinderException('Referenced column "sku" not found'), False),
        (ValueError("not a number"), False),
    ],
    ids=["catalog gone mid-statement", "catalog refusing", "disk full", "lake conflict", "a bug", "a bad value"],
)
def test_what_is_worth_another_try(error: Exception, transient: bool) -> None:
    """A lake whose PostgreSQL went away (killed, restarting) is waited for, as a full disk is: the job is
    tried again, never FAILED; an error of the job itself is not retried."""
    assert is_transient(error) is transient


@pytest.mark.parametrize(
    ("rows", "text_bytes", "expected"),
    [
        (1_000_000, 97_000_000, 250_000),  # short rows: the row limit
        (1_000_000, 265_000_000, 94_965),  # long rows: about 24 MiB of their text
        (10, 10 << 30, 1),  # rows longer than a chunk: one at a time
        (0, 0, 250_000),  # nothing to measure by
    ],
)
def test_a_validation_chunk_holds_about_its_bytes_of_text_and_at_most_its_rows(
    rows: int, text_bytes: int, expected: int
) -> None:
    assert validation_chunk_rows(Settings(), rows, text_bytes) == expected


def test_chunk_settings_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="STOCKYARD_VALIDATION_CHUNK_BYTES"):
        Settings(validation_chunk_bytes=0)
    with pytest.raises(ValueError, match="STOCKYARD_VALIDATION_CHUNK_ROWS"):
        Settings(validation_chunk_rows=-1)


def test_staged_text_is_measured_as_in_memory_not_as_encoded(tmp_path: Path) -> None:
    # staging writes with DuckDB: a column of few distinct values is dictionary-encoded, far smaller on disk
    path = tmp_path / "rows.parquet"
    duckdb.sql(
        f"COPY (SELECT i AS __row, 'a status of thirty characters ' || (i % 20) AS status FROM range(20000) t(i))"
        f" TO '{path}' (FORMAT parquet)"
    )
    in_memory = pl.read_parquet(path).to_arrow().nbytes
    assert 0.8 * in_memory <= staged_text_bytes([path]) <= 1.25 * in_memory
    assert staged_text_bytes([]) == 0


def test_staged_text_is_sampled_across_the_file_not_from_its_first_rows(tmp_path: Path) -> None:
    # the first rows leave an optional field empty, the rest fill it: the first rows alone weigh a tenth
    path = tmp_path / "rows.parquet"
    duckdb.sql(
        f"COPY (SELECT i AS __row, CASE WHEN i < 5000 THEN '' ELSE repeat('x', 500) END AS description"
        f" FROM range(500000) t(i)) TO '{path}' (FORMAT parquet)"
    )
    in_memory = pl.read_parquet(path).to_arrow().nbytes
    assert 0.6 * in_memory <= staged_text_bytes([path]) <= 1.25 * in_memory
