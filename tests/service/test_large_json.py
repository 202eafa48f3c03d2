"""A large JSON body is accepted once it is checked, counted and on disk, and staged by the worker that
prepares it (service/staging/large_json.py): the same staged rows, the same errors and the same unknown
fields as when the API staged it, and nothing lost when that worker is killed before it staged them."""

from __future__ import annotations

import errno
import json
import logging
import mmap
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from litestar.testing import TestClient

from benchmarks.generators import BatchSpec, generate_body
from service import prepare, staging
from service.app import create_app
from service.errors import BadRequestError, ServiceUnavailableError
from service.job_files import JobFiles
from service.kinds import KINDS
from service.recovery import PARTIAL_FILE_AGE_SECONDS, _remove_partial_files
from service.settings import Settings, get_settings
from service.staging import large_json
from service.staging.large_json import (
    STREAMED_BUFFER_BYTES,
    BuffersTooSmall,
    NotStreamable,
    kept_body_chunks,
    read_kept_body,
)
from tests.conftest import Api
from tests.service.processes import Stockyard, children_of, wait_for

ROWS = 20_000
"""Rows of the bodies here: more than the API stages from msgspec's decoding (512 KiB) for every kind."""


def _stage_both_ways(kind: str, body: bytes, directory: Path) -> tuple[staging.StagedUpload, Path, Path]:
    """Stage `body` as the API stages it, and keep it then stage it as a worker does; (kept, each's rows dir)."""
    contract = KINDS[kind].contract
    outcomes = []
    for way in ("api", "worker"):
        place = directory / way
        place.mkdir()
        (place / "body").write_bytes(body)
        lines = place / "lines.parquet" if contract.has_lines else None
        kept_path = place / "upload.json" if way == "worker" else None
        staged = staging.stage_body(
            contract, place / "body", place / "rows.parquet", lines, kept_path=kept_path, keep_from_rows=100
        )
        outcomes.append((staged, place))
    (direct, api_dir), (kept, worker_dir) = outcomes
    assert not direct.body_kept and kept.body_kept
    assert not (worker_dir / "rows.parquet").exists() and (worker_dir / "upload.json").exists()
    assert (kept.row_count, kept.unknown_fields) == (direct.row_count, direct.unknown_fields)
    row_count = staging.stage_kept_body(
        contract, worker_dir / "upload.json", worker_dir / "rows.parquet", kept.lines_path
    )
    assert row_count == direct.row_count
    assert not (worker_dir / "upload.json").exists()  # staged: the kept body is gone
    return kept, api_dir, worker_dir


def _same_files(api_dir: Path, worker_dir: Path) -> None:
    for name in ("rows.parquet", "lines.parquet"):
        if (api_dir / name).exists():
            assert pl.read_parquet(worker_dir / name).equals(pl.read_parquet(api_dir / name)), name


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_kept_body_is_staged_by_the_worker_as_the_api_stages_it(kind: str, tmp_path: Path) -> None:
    body = generate_body(BatchSpec(kind, ROWS, bad_share=0.05))
    assert len(body) > staging.small_json.DECODED_UP_TO_BYTES
    _, api_dir, worker_dir = _stage_both_ways(kind, body, tmp_path)
    _same_files(api_dir, worker_dir)


def test_the_rows_that_need_the_tolerant_reader_unknown_keys_and_lone_surrogates_stage_alike(tmp_path: Path) -> None:
    """Lines that are not objects or not an array, a repeated key, keys no field has (in rows and lines), a
    lone surrogate, a number identifier with a point: what the fast reader refuses, and what staging restores."""
    line = {"skuId": "P1", "quantity": 1, "locationId": "S1", "note": "x"}
    rows: list[Any] = [{"externalOrderId": f"O{i}", "lines": [line], "colour": "red"} for i in range(ROWS)]
    rows[3]["lines"] = [line, 5]
    rows[4]["lines"] = "x"
    rows[7] = {"externalOrderId": "NUMBER", "lines": [line]}
    text = json.dumps({"orders": rows}).replace('"O9"', '"O\\ud800"').replace('"NUMBER"', "1.50")
    text = text.replace('"O10", ', '"O10", "externalOrderId": "X", ')  # a key repeated: the last one wins
    kept, api_dir, worker_dir = _stage_both_ways("orders", text.encode(), tmp_path)
    _same_files(api_dir, worker_dir)
    assert [field.name for field in kept.unknown_fields] == ["colour", "lines[].note"]
    staged = pl.read_parquet(worker_dir / "rows.parquet")
    assert staged.filter(pl.col("__row") == 7).get_column("externalOrderId").item() == "1.50"


def test_a_kept_body_that_is_not_utf8_is_a_400(tmp_path: Path) -> None:
    rows = [{"externalId": f"S{i}"} for i in range(3 * ROWS)]  # more than msgspec's decoding stages
    body = json.dumps({"suppliers": rows}).encode().replace(b'"S17"', b'"S\xff17"')
    assert len(body) > staging.small_json.DECODED_UP_TO_BYTES
    (tmp_path / "body").write_bytes(body)
    with pytest.raises(BadRequestError, match="not valid UTF-8"):
        staging.stage_body(
            KINDS["suppliers"].contract, tmp_path / "body", tmp_path / "rows.parquet", None,
            kept_path=tmp_path / "upload.json", keep_from_rows=100,
        )  # fmt: skip
    assert not (tmp_path / "upload.json").exists()


_PIECES = [f"é{'€' * (i % 3)}😀x".encode() for i in range(200)]


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        (b"".join(_PIECES), True),  # characters of two to four bytes straddle the pieces
        (b"".join(_PIECES[:150]) + b"\xe2\x82x" + b"".join(_PIECES[150:]), False),  # a character cut short
        (b"abcdef\xe2" + b"x" * 7 + b"\x82\xac", False),  # cut short, then a piece of ASCII only
        (b"abc\xe2\x82", False),  # cut short at the end
    ],
)
def test_utf8_is_checked_across_the_steps_it_is_read_in(
    body: bytes, valid: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(large_json, "_CHECK_STEP", 7)
    (tmp_path / "body").write_bytes(body)
    with open(tmp_path / "body", "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        if valid:
            large_json._check_utf8(view)
        else:
            with pytest.raises(BadRequestError, match="not valid UTF-8"):
                large_json._check_utf8(view)


def test_a_kept_body_whose_pages_fail_to_reach_the_disk_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux reports a failed write-back once, to the first fsync that asks (here, the one that runs while
    the API checks the body): the upload is then refused as unwritable, not accepted as kept."""
    body = json.dumps({"suppliers": [{"externalId": f"S{i}"} for i in range(3 * ROWS)]}).encode()
    contract = KINDS["suppliers"].contract

    def stage(place: Path) -> staging.StagedUpload:
        place.mkdir()
        (place / "body").write_bytes(body)
        return staging.stage_body(
            contract, place / "body", place / "rows.parquet", None, kept_path=place / "upload.json", keep_from_rows=100
        )

    assert stage(tmp_path / "healthy").body_kept  # a body the API keeps, when the disk takes it
    real_fsync, failed = os.fsync, []

    def fsync_failing_once(fd: int) -> None:
        if not failed:
            failed.append(fd)
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_failing_once)
    with pytest.raises(ServiceUnavailableError, match="Input/output error") as refused:
        stage(tmp_path / "failing")
    assert refused.value.status_code == 503
    assert not (tmp_path / "failing" / "upload.json").exists()


def test_a_body_holding_elements_that_are_not_objects_is_staged_at_once_and_each_is_a_row_error(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB's fast reader would take a `null` element for an empty object: such a body is staged by the API
    with the tolerant reader, and a `null`, like a `5`, is a row that is not an object."""
    rows: list[Any] = [{"externalId": f"SUPPLIER-{i:08d}"} for i in range(ROWS)]
    rows[3], rows[15_000] = None, 5
    monkeypatch.setenv("STOCKYARD_GROUP_MAX_ROWS", "100")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings(), api.connection)) as client:
        accepted = client.post("/api/import/suppliers", json={"suppliers": rows}, headers={"x-api-key": api.key})
    assert accepted.status_code == 202, accepted.text
    files = JobFiles.of(api.settings.staging_dir, "acme", accepted.json()["jobId"])
    assert files.rows.exists() and not files.upload.exists()
    api.work()
    status = api.status(accepted.json()["jobId"]).json()
    assert [(e["row"], e["code"], e["message"]) for e in status["errors"]] == [
        (row, "invalid_type", "each row must be a JSON object") for row in (3, 15_000)
    ]
    assert status["failedCount"] == 2 and status["status"] == "COMPLETED"


def test_a_body_of_few_rows_is_staged_at_once(tmp_path: Path) -> None:
    body = generate_body(BatchSpec("inventory", ROWS))
    (tmp_path / "body").write_bytes(body)
    staged = staging.stage_body(
        KINDS["inventory"].contract, tmp_path / "body", tmp_path / "rows.parquet", None,
        kept_path=tmp_path / "upload.json", keep_from_rows=ROWS,
    )  # fmt: skip
    assert not staged.body_kept and (tmp_path / "rows.parquet").exists()
    assert not (tmp_path / "upload.json").exists()


def _odd_orders() -> bytes:
    """Orders the fast reader refuses (a line that is not an object), with a lone surrogate and an identifier
    sent as a number with a point: the worker stages such a body whole before it validates it."""
    line = {"skuId": "P1", "quantity": 1, "locationId": "S1"}
    rows: list[Any] = [{"externalOrderId": f"ORDER-{i:08d}", "lines": [line, line]} for i in range(ROWS)]
    rows[5]["lines"] = [line, 5]
    rows[7] = {"externalOrderId": "NUMBER", "lines": [line]}
    rows[9]["lines"] = []
    text = json.dumps({"orders": rows}).replace('"NUMBER"', "1.50").replace('"ORDER-00000011"', '"O\\ud800"')
    return text.encode()


def _body_of(kind: str) -> bytes:
    if kind == "odd orders":
        return _odd_orders()
    if kind == "purchase orders straddling":  # read again with one buffer (see the test below)
        return generate_body(BatchSpec("purchase-orders", 125_000))
    return generate_body(BatchSpec(kind, ROWS, bad_share=0.05))


@pytest.mark.parametrize("kind", ["inventory", "purchase-orders", "odd orders", "purchase orders straddling"])
def test_the_api_answers_before_staging_and_the_worker_streams_the_body(
    api: Api, settings: Settings, kind: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the API and the worker: the 202 carries the row count, the kept body waits for the worker,
    and the job's errors, warnings, counts, failed rows and warehouse rows are those of the same body staged
    by the API; the kept body is gone once the job has ended."""
    body = _body_of(kind)
    endpoint = {"odd orders": "orders", "purchase orders straddling": "purchase-orders"}.get(kind, kind)
    monkeypatch.setenv("STOCKYARD_GROUP_MAX_ROWS", "100")  # the workers': jobs of 20,000 rows are large
    get_settings.cache_clear()
    with TestClient(create_app(get_settings(), api.connection)) as client:
        accepted = client.post(
            f"/api/import/{endpoint}", content=body, headers={"x-api-key": api.key, "content-type": "application/json"}
        )
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["jobId"]
    assert accepted.json()["rowCount"] == (125_000 if kind == "purchase orders straddling" else ROWS)
    files = JobFiles.of(settings.staging_dir, "acme", job_id)
    assert files.upload.exists() and not files.rows.exists() and not files.body.exists()
    caplog.set_level(logging.INFO)
    api.work()
    assert ("read again with larger buffers" in caplog.text) is (kind == "purchase orders straddling")
    kept = api.status(job_id).json()
    assert kept["status"] == "COMPLETED" and kept["failedCount"] > 0
    assert not files.upload.exists()
    streamed = kind != "odd orders"
    assert files.failed_rows.exists() is streamed and files.rows.exists() is not streamed
    kept_rows = _warehouse_rows(api, endpoint, job_id)

    other = api.create_key("globex")  # the same body staged by the API (the fixture's: group_max_rows 50,000)
    reference = api.post(endpoint, body, key=other)
    assert reference.status_code == 202
    api.work()
    staged = api.status(reference.json()["jobId"], key=other).json()
    compared = ("rowCount", "processedCount", "failedCount", "errors", "warnings")
    assert {key: kept[key] for key in compared} == {key: staged[key] for key in compared}
    reference_rows = _warehouse_rows(api, endpoint, reference.json()["jobId"])
    assert kept_rows == [  # locations are stored as {organization}-{locationId}
        tuple(value.replace("globex-", "acme-") if isinstance(value, str) else value for value in row)
        for row in reference_rows
    ]
    for upload_format in ("json", "csv"):
        downloads = [
            api.client.get(f"/api/import/status/{job}/failed-rows?format={upload_format}", headers={"x-api-key": key})
            for job, key in ((job_id, api.key), (reference.json()["jobId"], other))
        ]
        assert [each.status_code for each in downloads] == [200, 200]
        assert downloads[0].content == downloads[1].content


def _warehouse_rows(api: Api, endpoint: str, job_id: str) -> list[tuple[Any, ...]]:
    table = KINDS[endpoint].tables.rows.name
    return api.query(
        f"SELECT * EXCLUDE (organization_id, created_at, updated_at, last_job_id) FROM {table}"
        " WHERE last_job_id = ? ORDER BY ALL",
        [job_id],
    )


@pytest.mark.slow
@pytest.mark.parametrize("hook", ["before staging", "mid-stream"])
def test_a_worker_killed_while_it_reads_a_kept_body_loses_nothing(tmp_path: Path, hook: str) -> None:
    """kill -9 of the worker that took the job, before it read the body or between two of its chunks: its
    successor reads it again from the start, and the job lands once, with its failed rows."""
    stockyard = Stockyard(tmp_path / "stockyard")
    try:
        pause = {"STOCKYARD_TEST_STAGE_DELAY" if hook == "before staging" else "STOCKYARD_TEST_PREPARE_DELAY": "3"}
        serve = stockyard.serve(
            STOCKYARD_WORKERS="1", STOCKYARD_GROUP_MAX_ROWS="100", STOCKYARD_VALIDATION_CHUNK_ROWS="4096", **pause
        )
        rows: list[Any] = [{"externalId": f"SUPPLIER-{i:08d}"} for i in range(ROWS)]  # over 512 KiB: kept
        rows[12_345] = {"externalId": ""}
        job_id = stockyard.accept("suppliers", {"suppliers": rows})
        paused = "staging of job" if hook == "before staging" else "prepare of job"
        wait_for(lambda: f"{paused} {job_id} paused" in serve.output(), 30, "the worker to take the job")
        (worker,) = children_of(serve.pid, "service.cli worker")
        os.killpg(worker, signal.SIGKILL)
        (status,) = stockyard.wait_finished([job_id], timeout=120)
        assert status["status"] == "COMPLETED" and status["rowCount"] == ROWS and status["failedCount"] == 1
        assert status["errors"][0]["row"] == 12_345
        assert f"re-queued 1 accepted job(s) {job_id}" in serve.output()
        assert stockyard.query("SELECT count(*), count(DISTINCT external_id) FROM suppliers", after=[job_id]) == [
            (ROWS - 1, ROWS - 1)
        ]
        assert stockyard.query("SELECT count(*) FROM import_jobs") == [(1,)]
        failed = httpx.get(
            f"{stockyard.url}/api/import/status/{job_id}/failed-rows", headers={"x-api-key": stockyard.key_of("acme")}
        )
        assert failed.json()["suppliers"] == [{"externalId": "", "_row": 12_345, "_errors": ["externalId is required"]}]
    finally:
        stockyard.cleanup()


def test_a_kept_body_whose_job_was_never_recorded_is_removed_after_an_hour(tmp_path: Path) -> None:
    """The API died between keeping the body and writing the job's record: nobody will stage it."""
    staging_dir = tmp_path / "staging"
    orphan, recorded = (JobFiles.of(staging_dir, "acme", c * 32) for c in "ab")
    orphan.directory.mkdir(parents=True)
    for files in (orphan, recorded):
        files.upload.write_bytes(b"[]")
        os.utime(files.upload, (time.time() - PARTIAL_FILE_AGE_SECONDS - 60,) * 2)
    recorded.record.write_bytes(b"{}")
    assert _remove_partial_files(staging_dir) == 1
    assert not orphan.upload.exists() and recorded.upload.exists()


@pytest.mark.parametrize("at", [5, 15_000], ids=["in the first chunk", "after the first chunks"])
def test_a_body_the_fast_reader_refuses_is_not_streamable(tmp_path: Path, at: int) -> None:
    """An element that is not an object (nor null): refused as DuckDB starts, or later through the Arrow
    stream, either way NotStreamable."""
    rows: list[Any] = [{"externalId": f"SUPPLIER-{i:08d}"} for i in range(ROWS)]
    rows[at] = 5
    body = tmp_path / "upload.json"
    body.write_text(json.dumps(rows))
    read = 0
    with pytest.raises(NotStreamable), kept_body_chunks(KINDS["suppliers"].contract, body, 2048) as chunks:
        for chunk, _ in chunks:
            read += chunk.height
    assert read <= at


def test_a_body_that_trips_duckdbs_read_buffers_is_read_again_with_larger_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """DuckDB's array reader, with buffers smaller than the body, can say "Malformed JSON" where an element
    starts right before a buffer's end: this body's row 121,093 (at 32 MiB) with 16 MB buffers. It is read
    again with the next, larger ones (not one the size of the body), and the rows equal what staging whole
    writes."""
    body = generate_body(BatchSpec("purchase-orders", 125_000))  # the first rows of the benchmark's 1M
    first, second = STREAMED_BUFFER_BYTES
    assert len(body) > second  # the second read has buffers smaller than the body too
    (tmp_path / "body.json").write_bytes(body)
    contract = KINDS["purchase-orders"].contract
    staging.from_json.isolate_array(tmp_path / "body.json", contract.array_key)
    with pytest.raises(BuffersTooSmall), kept_body_chunks(contract, tmp_path / "body.json", 50_000) as chunks:
        for _ in chunks:
            pass
    caplog.set_level(logging.INFO, logger="stockyard.staging")
    read = read_kept_body(contract, tmp_path / "body.json", 50_000, list)
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        f"body.json is read again with larger buffers than {first} bytes"
    ]
    staging.stage_kept_body(contract, tmp_path / "body.json", tmp_path / "rows.parquet", tmp_path / "lines.parquet")
    assert pl.concat([rows for rows, _ in read]).equals(pl.read_parquet(tmp_path / "rows.parquet"))
    assert pl.concat([lines for _, lines in read if lines is not None]).equals(
        pl.read_parquet(tmp_path / "lines.parquet")
    )


def test_warming_up_reads_every_kind_and_leaves_only_its_own_bodies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new worker reads, validates and transforms two rows of each kind, from one body per kind that every
    worker replaces: workers that end while warming up leave no directory of their own behind."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    read: list[str] = []
    real = prepare.kept_body_chunks

    def counted(contract: Any, path: Path, chunk_rows: int) -> Any:
        read.append(contract.kind)
        return real(contract, path, chunk_rows)

    monkeypatch.setattr(prepare, "kept_body_chunks", counted)
    prepare.warm_up()
    prepare.warm_up()
    assert read == list(KINDS) * 2
    assert list(tmp_path.iterdir()) == [prepare.warm_up_directory()]
    assert sorted(p.name for p in prepare.warm_up_directory().iterdir()) == sorted(f"{k}.json" for k in KINDS)
