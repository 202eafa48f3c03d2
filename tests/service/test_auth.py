"""Keys, scopes and organizations: 401, 403, 404 exactly as CONTRACT.md says."""

from __future__ import annotations

from service.auth import Scope
from tests.conftest import Api

ROWS = {"suppliers": [{"externalId": "S"}]}


def test_missing_unknown_and_malformed_keys_are_401(api: Api) -> None:
    assert api.client.post("/api/import/suppliers", json=ROWS).status_code == 401
    forged = "sy_0123456789abcdef_" + "x" * 43
    assert api.post("suppliers", ROWS, key=forged).status_code == 401
    assert api.post("suppliers", ROWS, key="nonsense").status_code == 401
    assert api.post("suppliers", ROWS, key=api.key[:-1] + ("A" if api.key[-1] != "A" else "B")).status_code == 401


def test_revoked_key_is_401_at_once(api: Api) -> None:
    key_id, key = api.keys.create("acme", [Scope.IMPORT_WRITE])
    assert api.post("suppliers", ROWS, key=key).status_code == 202
    assert api.keys.revoke(key_id)
    assert api.post("suppliers", ROWS, key=key).status_code == 401


def test_scopes_are_403(api: Api) -> None:
    read_only = api.create_key("acme", [Scope.IMPORT_READ])
    write_only = api.create_key("acme", [Scope.IMPORT_WRITE])
    assert api.post("suppliers", ROWS, key=read_only).status_code == 403
    accepted = api.post("suppliers", ROWS, key=write_only)
    assert accepted.status_code == 202
    assert api.status(accepted.json()["jobId"], key=write_only).status_code == 403
    assert api.status(accepted.json()["jobId"], key=read_only).status_code == 200


def test_keys_are_stored_hashed(api: Api) -> None:
    assert api.key.encode() not in api.settings.keys_path.read_bytes()


def test_another_organization_can_neither_read_nor_touch(api: Api) -> None:
    other = api.create_key("globex")
    mine = api.run("suppliers", [{"externalId": "SHARED"}])
    job_id = mine["jobId"]
    for path in (f"/api/import/status/{job_id}", f"/api/import/status/{job_id}/errors"):
        response = api.client.get(path, headers={"x-api-key": other})
        assert response.status_code == 404
        assert response.json() == api.client.get(
            path.replace(job_id, "0" * 32), headers={"x-api-key": other}
        ).json() | {"detail": response.json()["detail"]}
    # their rows with the same key live apart from ours
    api.run("suppliers", [{"externalId": "SHARED"}, {"externalId": "THEIRS"}], key=other)
    assert api.query("SELECT organization_id, external_id FROM suppliers ORDER BY ALL") == [
        ("acme", "SHARED"),
        ("globex", "SHARED"),
        ("globex", "THEIRS"),
    ]
    assert not list((api.settings.staging_dir / "acme").glob("*")) or all(
        p.parent.name == "acme" for p in (api.settings.staging_dir / "acme").glob("*")
    )


def test_crafted_job_ids_are_404(api: Api) -> None:
    for job_id in ("..%2F..%2Fkeys", "%2E%2E", "0" * 31, "../acme"):
        response = api.client.get(f"/api/import/status/{job_id}", headers={"x-api-key": api.key})
        assert response.status_code == 404
