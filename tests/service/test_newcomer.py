"""What a newcomer meets first: commands that say where things are, refuse to half-start, and say what
to do next. Each case is one a new user hit on a fresh clone."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from service import cli
from tests.service.processes import REPOSITORY, free_port


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": str(REPOSITORY), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **extra}


def test_api_refuses_to_start_without_redis_and_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "REDIS_WAIT_SECONDS", 0.5)
    nowhere = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(cli.main, ["api", "--data-dir", str(tmp_path)], env={"REDIS_URL": nowhere})
    assert result.exit_code == 1
    assert f"Redis at redis://:***@127.0.0.1:{nowhere.rsplit(':', 1)[1]} does not answer" in result.output
    assert "check REDIS_URL" in result.output and "s3cret" not in result.output
    embedded = CliRunner().invoke(cli.main, ["worker", "--data-dir", str(tmp_path)], env={"REDIS_URL": ""})
    assert embedded.exit_code == 1 and "run `stockyard serve`, which starts an embedded one" in embedded.output


def test_a_key_made_in_a_new_directory_says_where_it_is_and_that_the_service_may_not_know_it(tmp_path: Path) -> None:
    elsewhere = tmp_path / "somewhere-else"
    args = ["keys", "create", "--org", "acme", "--scope", "import:read", "--data-dir", str(elsewhere)]
    first = CliRunner().invoke(cli.main, args)
    assert first.exit_code == 0, first.output
    assert f"there was no key store in {elsewhere}" in first.stderr
    assert f"Stored in {elsewhere / 'keys.sqlite3'}" in first.stdout
    assert first.stdout.strip().splitlines()[-1].startswith("sy_")  # the key stays the last line
    second = CliRunner().invoke(cli.main, args)
    assert second.exit_code == 0 and second.stderr == ""  # the store exists now: nothing to warn about


def test_serve_on_a_taken_port_fails_before_making_the_dev_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data_dir = tmp_path / "new"
        done = subprocess.run(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            env=_environment(tmp_path),
            timeout=60,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "STOCKYARD_PORT" in done.stderr
    assert "API key" not in done.stdout
    assert not (data_dir / "keys.sqlite3").exists()  # the one-time dev key is still to come


def test_version_and_a_missing_key() -> None:
    version = CliRunner().invoke(cli.main, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("stockyard, version ")
    upload = CliRunner().invoke(cli.main, ["status", "0" * 32], env={"STOCKYARD_API_KEY": ""})
    assert upload.exit_code == 2 and "STOCKYARD_API_KEY" in upload.output and "stockyard keys create" in upload.output
