"""A large JSON body is accepted once it is checked, counted and on disk, and staged by the worker that
prepares it (service/staging/large_json.py): the same staged rows, the same errors and the same unknown
fields as when the API staged it, and nothing lost when that worker is killed before it staged them."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from litestar.testing import TestClient

from benchmarks.generators import BatchSpec, generate_body
from service import staging
from service.app import create_app
from service.errors import BadRequestError
from service.job_files import JobFiles
from service.kinds import KINDS
from service.recovery import PARTIAL_FILE_AGE_SECONDS, _remove_partial_files
from service.settings import Settings
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
    """Null and number elements, a repeated key, keys no field has (in rows and lines), a lone surrogate,
    a number identifier with a point: what the fast reader refuses, and what staging restores."""
    line = {"skuId": "P1", "quantity": 1, "locationId": "S1", "note": "x"}
    rows: list[Any] = [{"externalOrderId": f"O{i}", "lines": [line], "colour": "red"} for i in range(ROWS)]
    rows[3] = None
    rows[4] = 5
    rows[7] = {"externalOrderId": "NUMBER", "lines": [line]}
    text = json.dumps({"orders": rows}).replace('"O9"', '"O\\ud800"').replace('"NUMBER"', "1.50")
    text = text.replace('"O10", ', '"O10", "externalOrderId": "X", ')  # a key repeated: the last one wins
    kept, api_dir, worker_dir = _stage_both_ways("orders", text.encode(), tmp_path)
    _same_files(api_dir, worker_dir)
    assert [field.name for field in kept.unknown_fields] == ["colour", "lines[].note"]
    staged = pl.read_parquet(worker_dir / "rows.parquet")
    assert staged.filter(pl.col("__row") == 7).get_column("externalOrderId").item() == "1.50"


def test_a_kept_body_that_is_not_utf8_is_a_400(tmp_path: Path) -> None:
    rows = [{"externalId": f"S{i}"} for i in range(ROWS)]
    body = json.dumps({"suppliers": rows}).encode().replace(b'"S17"', b'"S\xff17"')
    (tmp_path / "body").write_bytes(body)
    with pytest.raises(BadRequestError, match="not valid UTF-8"):
        staging.stage_body(
            KINDS["suppliers"].contract, tmp_path / "body", tmp_path / "rows.parquet", None,
            kept_path=tmp_path / "upload.json", keep_from_rows=100,
        )  # fmt: skip
    assert not (tmp_path / "upload.json").exists()


def test_a_body_of_few_rows_is_staged_at_once(tmp_path: Path) -> None:
    body = generate_body(BatchSpec("inventory", ROWS))
    (tmp_path / "body").write_bytes(body)
    staged = staging.stage_body(
        KINDS["inventory"].contract, tmp_path / "body", tmp_path / "rows.parquet", None,
        kept_path=tmp_path / "upload.json", keep_from_rows=ROWS,
    )  # fmt: skip
    assert not staged.body_kept and (tmp_path / "rows.parquet").exists()
    assert not (tmp_path / "upload.json").exists()


def test_the_api_answers_before_staging_and_the_worker_stages(api: Api, settings: Settings) -> None:
    """Through the API and the worker: the 202 carries the row count, the kept body waits for the worker,
    and the job's errors, counts and failed rows are those of a job the API staged."""
    kind = "inventory"
    body = generate_body(BatchSpec(kind, ROWS, bad_share=0.05))
    small = Settings(data_dir=settings.data_dir, redis_url=settings.redis_url, group_max_rows=100)
    with TestClient(create_app(small, api.connection)) as client:
        accepted = client.post(
            f"/api/import/{kind}", content=body, headers={"x-api-key": api.key, "content-type": "application/json"}
        )
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["jobId"]
    assert accepted.json()["rowCount"] == ROWS
    files = JobFiles.of(settings.staging_dir, "acme", job_id)
    assert files.upload.exists() and not files.rows.exists() and not files.body.exists()

    reference = api.post(kind, body)  # the same body, staged by the API (its group_max_rows: 50,000)
    assert reference.status_code == 202
    api.work()
    kept_status, staged_status = (api.status(each).json() for each in (job_id, reference.json()["jobId"]))
    assert kept_status["status"] == "COMPLETED"
    compared = ("rowCount", "processedCount", "failedCount", "errors", "warnings")
    assert {key: kept_status[key] for key in compared} == {key: staged_status[key] for key in compared}
    assert kept_status["failedCount"] > 0
    assert not files.upload.exists() and files.rows.exists()
    failed = api.client.get(f"/api/import/status/{job_id}/failed-rows", headers={"x-api-key": api.key})
    reference_failed = api.client.get(
        f"/api/import/status/{reference.json()['jobId']}/failed-rows", headers={"x-api-key": api.key}
    )
    assert failed.status_code == 200 and failed.content == reference_failed.content


@pytest.mark.slow
def test_a_worker_killed_before_it_staged_a_kept_body_loses_nothing(tmp_path: Path) -> None:
    """kill -9 of the worker that took the job, before it staged the body: its successor stages it, and the
    job lands once."""
    stockyard = Stockyard(tmp_path / "stockyard")
    try:
        serve = stockyard.serve(STOCKYARD_WORKERS="1", STOCKYARD_GROUP_MAX_ROWS="100", STOCKYARD_TEST_STAGE_DELAY="3")
        rows = [{"externalId": f"SUPPLIER-{i:08d}"} for i in range(ROWS)]  # over 512 KiB: kept for the worker
        job_id = stockyard.accept("suppliers", {"suppliers": rows})
        wait_for(lambda: f"staging of job {job_id} paused" in serve.output(), 30, "the worker to take the job")
        (worker,) = children_of(serve.pid, "service.cli worker")
        os.killpg(worker, signal.SIGKILL)
        (status,) = stockyard.wait_finished([job_id], timeout=90)
        assert status["status"] == "COMPLETED" and status["failedCount"] == 0 and status["rowCount"] == ROWS
        assert f"re-queued 1 accepted job(s) {job_id}" in serve.output()
        assert stockyard.query("SELECT count(*), count(DISTINCT external_id) FROM suppliers", after=[job_id]) == [
            (ROWS, ROWS)
        ]
        assert stockyard.query("SELECT count(*) FROM import_jobs") == [(1,)]
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
