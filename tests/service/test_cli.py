"""The operator's CLI: keys created, listed and revoked take effect in a running service at once."""

from __future__ import annotations

import re

from click.testing import CliRunner

from service.cli import main
from tests.conftest import Api


def _cli(api: Api, *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--data-dir", str(api.settings.data_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_created_key_works_at_once_and_revoked_key_stops(api: Api) -> None:
    output = _cli(api, "keys", "create", "--org", "initech", "--scope", "import:write", "--scope", "import:read")
    key = output.strip().splitlines()[-1]
    assert re.fullmatch(r"sy_[0-9a-f]{16}_[A-Za-z0-9_-]+", key)
    status = api.run("suppliers", [{"externalId": "S"}], key=key)
    assert status["status"] == "COMPLETED"
    assert api.query("SELECT organization_id FROM suppliers") == [("initech",)]

    key_id = key.split("_")[1]
    listing = _cli(api, "keys", "list")
    assert key_id in listing and "initech" in listing and "import:read import:write" in listing
    assert key not in listing  # never shown again

    _cli(api, "keys", "revoke", key_id)
    assert api.post("suppliers", {"suppliers": []}, key=key).status_code == 401
    assert f"{key_id}  initech" in _cli(api, "keys", "list") and "revoked" in _cli(api, "keys", "list")


def test_create_rejects_bad_organization_and_unknown_scope(api: Api) -> None:
    runner = CliRunner()
    data_dir = str(api.settings.data_dir)
    bad_org = runner.invoke(main, ["keys", "create", "--org", "../x", "--scope", "import:read", "--data-dir", data_dir])
    assert bad_org.exit_code != 0 and "organization ids" in bad_org.output
    bad_scope = runner.invoke(main, ["keys", "create", "--org", "a", "--scope", "admin", "--data-dir", data_dir])
    assert bad_scope.exit_code != 0 and "admin" in bad_scope.output


def test_revoking_an_unknown_key_fails(api: Api) -> None:
    result = CliRunner().invoke(main, ["keys", "revoke", "0" * 16, "--data-dir", str(api.settings.data_dir)])
    assert result.exit_code != 0 and "no active key" in result.output
