"""`stockyard upload` and `stockyard status` end to end, against the real service (`stockyard serve`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from service import client
from service.cli import IMPORT_KINDS, main
from service.kinds import KINDS
from tests.service.processes import REPOSITORY, Stockyard, free_port
from tests.service.test_failed_rows import fix_all
from tests.service.test_formats import ROWS
from tests.service.uploads import decode, encode, gzipped, reencode


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stockyard]:
    stockyard = Stockyard(tmp_path_factory.mktemp("client"))
    try:
        stockyard.serve()
        yield stockyard
    finally:
        stockyard.cleanup()


def stockyard(service: Stockyard, *args: str, env: dict[str, str] | None = None) -> Result:
    """The CLI as a user runs it, key and URL from the environment unless given."""
    environment = {"STOCKYARD_URL": service.url, "STOCKYARD_API_KEY": service.key, **(env or {})}
    return CliRunner().invoke(main, list(args), env=environment, catch_exceptions=False)


def counts(text: str) -> dict[str, int]:
    """The counts of the human summary: `  rows        5`."""
    return {name: int(number.replace(",", "")) for name, number in re.findall(r"^  (\w+) +([\d,]+)$", text, re.M)}


def summary(result: Result) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_upload_csv_save_the_failed_rows_fix_them_and_upload_again(service: Stockyard, tmp_path: Path) -> None:
    levels = tmp_path / "levels.csv"
    levels.write_bytes(encode("inventory", ROWS["inventory"], "csv"))
    first = stockyard(service, "upload", "inventory", str(levels))
    assert first.exit_code == client.EXIT_ROWS_FAILED, first.output
    assert counts(first.stdout) == {"rows": 5, "accepted": 2, "failed": 3, "warnings": 0}
    saved = list(tmp_path.glob("levels.failed-*.csv"))
    assert len(saved) == 1 and f"Failed rows saved to {saved[0]}" in first.stdout
    assert "Uploading levels.csv" in first.stderr  # progress goes to stderr
    assert "The service stages the rows: done in" in first.stderr  # the wait for the 202 is shown too

    rows = fix_all("inventory", decode("inventory", saved[0].read_bytes(), "csv"), "csv")
    saved[0].write_bytes(reencode("inventory", rows, "csv"))
    second = stockyard(service, "upload", "inventory", str(saved[0]), "--json")
    assert second.exit_code == 0, second.output
    assert {k: v for k, v in summary(second).items() if k != "jobId"} == {
        "type": "inventory",
        "status": "COMPLETED",
        "rows": 3,
        "processed": 3,
        "accepted": 3,
        "failed": 0,
        "warnings": 0,
        "failedRows": None,
        "error": None,
    }
    assert service.query("SELECT count(*) FROM inventory_levels", after=[summary(second)["jobId"]]) == [(5,)]


def test_gzip_ndjson_with_json_output_saves_uncompressed_failed_rows(service: Stockyard, tmp_path: Path) -> None:
    orders = tmp_path / "orders.ndjson.gz"
    orders.write_bytes(gzipped(encode("orders", ROWS["orders"], "ndjson")))
    result = stockyard(service, "upload", "orders", str(orders), "--json")
    assert result.exit_code == client.EXIT_ROWS_FAILED, result.output
    outcome = summary(result)
    assert (outcome["rows"], outcome["accepted"], outcome["failed"]) == (4, 2, 2)
    assert outcome["failedRows"].endswith(".ndjson") and outcome["failedRows"].startswith(str(tmp_path))
    failed = decode("orders", Path(outcome["failedRows"]).read_bytes(), "ndjson")
    assert [row["externalOrderId"] for row in failed] == ["O-2", "O-3"]
    assert result.stderr == ""  # --json: no progress bars


def test_no_wait_then_status(service: Stockyard, tmp_path: Path) -> None:
    suppliers = tmp_path / "suppliers.parquet"
    suppliers.write_bytes(encode("suppliers", ROWS["suppliers"], "parquet"))
    accepted = stockyard(service, "upload", "suppliers", str(suppliers), "--no-wait", "--json")
    assert accepted.exit_code == 0, accepted.output
    job_id = summary(accepted)["jobId"]
    assert summary(accepted) == {
        "jobId": job_id,
        "type": "suppliers",
        "status": "PENDING",
        "rows": 3,
        "processed": 0,
        "accepted": None,
        "failed": 0,
        "warnings": 0,
        "failedRows": None,
        "error": None,
    }
    deadline = time.monotonic() + 30
    while summary(current := stockyard(service, "status", job_id, "--json"))["status"] not in ("COMPLETED", "FAILED"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert current.exit_code == client.EXIT_ROWS_FAILED
    human = stockyard(service, "status", job_id)
    assert f"Job {job_id} (suppliers): COMPLETED" in human.stdout
    assert "row 1: externalId must be at most 255 characters" in human.stdout


def test_refused_unreachable_and_unknown_files(service: Stockyard, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_bytes(encode("catalog", ROWS["catalog"], "json"))
    refused = stockyard(service, "upload", "catalog", str(catalog), env={"STOCKYARD_API_KEY": "sy_nope"})
    assert refused.exit_code == client.EXIT_REFUSED and "401" in refused.output
    unreachable = stockyard(service, "upload", "catalog", str(catalog), "--url", f"http://127.0.0.1:{free_port()}")
    assert unreachable.exit_code == client.EXIT_REFUSED and "could not reach" in unreachable.output
    (tmp_path / "catalog.txt").write_text("x")
    unknown = stockyard(service, "upload", "catalog", str(tmp_path / "catalog.txt"))
    assert unknown.exit_code == 2 and "cannot tell the format" in unknown.output
    bad = tmp_path / "broken.csv"
    bad.write_text("title\nA\n")
    assert stockyard(service, "upload", "catalog", str(bad)).exit_code == client.EXIT_REFUSED
    missing = stockyard(service, "status", "0" * 32)
    assert missing.exit_code == client.EXIT_REFUSED and "404" in missing.output and "check the job id" in missing.output
    malformed = stockyard(service, "status", "0000")
    assert "no job '0000': a job id is the 32 hexadecimal characters" in malformed.output
    no_key = CliRunner().invoke(main, ["status", "0" * 32, "--url", service.url], env={"STOCKYARD_API_KEY": ""})
    assert no_key.exit_code == 2 and "pass --key or set STOCKYARD_API_KEY" in no_key.output
    assert "is the service running?" in unreachable.output
    assert "check the key" in refused.output


def test_the_installed_command_end_to_end(service: Stockyard, tmp_path: Path) -> None:
    """The real entry point in a process of its own, as a user's shell runs it."""
    purchase_orders = tmp_path / "po.json"
    purchase_orders.write_bytes(encode("purchase-orders", ROWS["purchase-orders"], "json"))
    command = [sys.executable, "-m", "service.cli", "upload", "purchase-orders", str(purchase_orders)]
    done = subprocess.run(
        [*command, "--url", service.url, "--key", service.key],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPOSITORY), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == client.EXIT_ROWS_FAILED, done.stderr
    assert "COMPLETED" in done.stdout and counts(done.stdout)["failed"] == 3
    assert len(list(tmp_path.glob("po.failed-*.json"))) == 1


def test_exit_codes_and_kinds() -> None:
    status = {"jobId": "j", "type": "orders", "rowCount": 3, "processedCount": 0, "failedCount": 3, "errors": []}
    assert client.exit_code({**status, "status": "FAILED"}) == client.EXIT_JOB_FAILED
    assert client.exit_code({**status, "status": "COMPLETED"}) == client.EXIT_ROWS_FAILED
    assert client.exit_code({**status, "status": "COMPLETED", "failedCount": 0}) == 0
    assert len({0, 2, client.EXIT_ROWS_FAILED, client.EXIT_JOB_FAILED, client.EXIT_REFUSED}) == 5
    assert set(IMPORT_KINDS) == set(KINDS)
    assert client.failed_rows_path(Path("/d/levels.csv.gz"), "1a2b3c4d5e", "csv") == Path(
        "/d/levels.failed-1a2b3c4d.csv"
    )
