"""Small jobs queued one behind the other are applied together, and end exactly as if applied one by one."""

from __future__ import annotations

from typing import Any

import pytest

from service.job_files import JobFiles
from service.settings import get_settings
from tests.conftest import Api


def accept(api: Api, kind: str, body: dict[str, Any], key: str | None = None) -> str:
    response = api.post(kind, body, key=key)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["jobId"]
    return job_id


def statuses(api: Api, job_ids: list[str], key: str | None = None) -> list[dict[str, Any]]:
    return [api.status(job_id, key=key).json() for job_id in job_ids]


def test_queued_small_jobs_commit_together_as_if_applied_in_order(api: Api) -> None:
    job_ids = [
        accept(api, "inventory", {"levels": [{"skuId": "A", "locationId": "L", "quantityOnHand": 1}]}),
        accept(
            api,
            "inventory",
            {
                "levels": [
                    {"skuId": "B", "locationId": "L", "quantityOnHand": "x"},  # row 0: bad
                    {"skuId": "A", "locationId": "L", "quantityOnHand": 2},
                    {"skuId": "A", "locationId": "L", "quantityOnHand": 3},  # supersedes row 1 of this job
                ]
            },
        ),
        accept(api, "inventory", {"levels": [{"skuId": "C", "locationId": "L", "quantityOnHand": -1}]}),
        accept(api, "inventory", {"levels": [{"skuId": "C", "locationId": "M", "quantityOnHand": 4}]}),
    ]
    api.work()

    first, second, third, fourth = statuses(api, job_ids)
    assert [s["status"] for s in (first, second, third, fourth)] == ["COMPLETED"] * 4
    assert len({s["completedAt"] for s in (first, second, third, fourth)}) == 1  # one commit
    assert (second["processedCount"], second["failedCount"]) == (3, 1)
    assert [(e["row"], e["field"], e["code"]) for e in second["errors"]] == [(0, "quantityOnHand", "invalid_type")]
    assert [(w["row"], w["code"]) for w in second["warnings"]] == [(1, "duplicate_key")]
    assert [(e["row"], e["field"], e["code"]) for e in third["errors"]] == [(0, "quantityOnHand", "invalid_value")]
    assert (fourth["errors"], fourth["failedCount"]) == ([], 0)
    failed_rows = api.client.get(
        f"/api/import/status/{job_ids[1]}/failed-rows", headers={"x-api-key": api.key}
    ).json()  # the second job's own rejected row, under its own row number
    assert [(r["_row"], r["skuId"], r["quantityOnHand"]) for r in failed_rows["levels"]] == [(0, "B", "x")]

    levels = api.query("SELECT sku_id, location_id, quantity_on_hand, last_job_id FROM inventory_levels ORDER BY 1, 2")
    assert levels == [("A", "acme-L", 3.0, job_ids[1]), ("C", "acme-M", 4.0, job_ids[3])]
    # a stub belongs to the first job that named it
    products = api.query("SELECT external_id, auto_created, last_job_id FROM products ORDER BY 1")
    assert products == [("A", True, job_ids[0]), ("C", True, job_ids[3])]
    jobs = api.query("SELECT job_id, status, row_count, failed_count FROM import_jobs ORDER BY created_at")
    assert jobs == [
        (job_ids[0], "COMPLETED", 1, 0),
        (job_ids[1], "COMPLETED", 3, 1),
        (job_ids[2], "COMPLETED", 1, 1),
        (job_ids[3], "COMPLETED", 1, 0),
    ]


def test_an_order_reimported_later_in_the_group_keeps_only_its_new_lines(api: Api) -> None:
    def order(lines: list[str]) -> dict[str, Any]:
        return {
            "orders": [
                {"externalOrderId": "O1", "lines": [{"skuId": s, "quantity": 1, "locationId": "L"} for s in lines]}
            ]
        }

    bad_line = {"orders": [{"externalOrderId": "O1", "lines": [{"skuId": "E", "quantity": 1, "locationId": "L"}, {}]}]}
    job_ids = [accept(api, "orders", order(["A", "B", "C"])), accept(api, "orders", order(["D"]))]
    job_ids.append(accept(api, "orders", bad_line))  # rejected whole: the order keeps the second job's line
    api.work()

    first, second, third = statuses(api, job_ids)
    assert [first["status"], second["status"], third["status"]] == ["COMPLETED"] * 3
    assert (third["failedCount"], [(e["row"], e["field"]) for e in third["errors"]][:1]) == (1, [(0, "lines[1].skuId")])
    lines = api.query("SELECT line_number, sku_id, last_job_id FROM order_lines ORDER BY 1")
    assert lines == [(1, "D", job_ids[1])]
    assert api.query("SELECT external_id FROM products ORDER BY 1") == [("A",), ("B",), ("C",), ("D",)]


def test_another_kind_or_organization_in_between_keeps_the_order(api: Api) -> None:
    other = api.create_key("globex")
    job_ids = [
        accept(api, "inventory", {"levels": [{"skuId": "A", "locationId": "L", "quantityOnHand": 1}]}),
        accept(api, "catalog", {"products": [{"externalId": "A", "name": "Lamp"}]}),
        accept(api, "inventory", {"levels": [{"skuId": "A", "locationId": "L", "quantityOnHand": 2}]}, key=other),
        accept(api, "inventory", {"levels": [{"skuId": "A", "locationId": "L", "quantityOnHand": 3}]}),
    ]
    api.work()

    assert [s["status"] for s in statuses(api, [job_ids[0], job_ids[1], job_ids[3]])] == ["COMPLETED"] * 3
    assert statuses(api, [job_ids[2]], key=other)[0]["status"] == "COMPLETED"
    levels = api.query("SELECT organization_id, quantity_on_hand, last_job_id FROM inventory_levels ORDER BY 1")
    assert levels == [("acme", 3.0, job_ids[3]), ("globex", 2.0, job_ids[2])]
    products = api.query("SELECT organization_id, name, auto_created FROM products ORDER BY 1")
    assert products == [("acme", "Lamp", False), ("globex", "A", True)]


def test_a_job_that_cannot_run_fails_alone_and_the_others_land(api: Api) -> None:
    job_ids = [accept(api, "suppliers", {"suppliers": [{"externalId": name}]}) for name in ("S1", "S2", "S3")]
    JobFiles.of(api.settings.staging_dir, "acme", job_ids[1]).rows.unlink()  # as if the disk lost it
    api.work()

    first, second, third = statuses(api, job_ids)
    assert [first["status"], second["status"], third["status"]] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert "staged upload of this job is missing" in second["errors"][0]["message"]
    assert api.query("SELECT external_id FROM suppliers ORDER BY 1") == [("S1",), ("S3",)]
    assert api.query("SELECT status FROM import_jobs WHERE job_id = ?", [job_ids[1]]) == [("FAILED",)]


def test_a_group_stops_at_its_row_limit_and_a_large_job_goes_alone(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKYARD_GROUP_MAX_ROWS", "2")
    get_settings.cache_clear()
    one = [accept(api, "suppliers", {"suppliers": [{"externalId": f"S{n}"}]}) for n in range(3)]
    large = accept(api, "suppliers", {"suppliers": [{"externalId": "L1"}, {"externalId": "L2"}, {"externalId": "L3"}]})
    last = accept(api, "suppliers", {"suppliers": [{"externalId": "S9"}]})
    api.work()

    done = statuses(api, [*one, large, last])
    assert [s["status"] for s in done] == ["COMPLETED"] * 5
    commits = [s["completedAt"] for s in done]
    assert commits[0] == commits[1]  # two rows: the limit
    assert len(set(commits)) == 4  # the third small job, the large one and the last each commit alone
    assert api.query("SELECT count(*) FROM suppliers") == [(7,)]


def test_small_jobs_of_several_organizations_ready_at_once_commit_together(api: Api) -> None:
    globex, initech = api.create_key("globex"), api.create_key("initech")
    acme_ids = [
        accept(api, "inventory", {"levels": [{"skuId": "A", "locationId": "L", "quantityOnHand": n}]}) for n in (1, 2)
    ]
    globex_id = accept(api, "inventory", {"levels": [{"skuId": "A", "locationId": "L", "quantityOnHand": 5}]}, globex)
    initech_id = accept(api, "catalog", {"products": [{"externalId": "A", "name": "Lamp"}]}, initech)
    api.work()

    done = [*statuses(api, acme_ids), *statuses(api, [globex_id], globex)]
    (catalog,) = statuses(api, [initech_id], initech)
    assert [s["status"] for s in [*done, catalog]] == ["COMPLETED"] * 4
    assert len({s["completedAt"] for s in done}) == 1  # one commit for both organizations' inventory
    assert catalog["completedAt"] != done[0]["completedAt"]  # another kind: a transaction of its own
    levels = api.query("SELECT organization_id, location_id, quantity_on_hand, last_job_id FROM inventory_levels")
    assert sorted(levels) == [("acme", "acme-L", 2.0, acme_ids[1]), ("globex", "globex-L", 5.0, globex_id)]
    products = api.query("SELECT organization_id, external_id, name, auto_created, last_job_id FROM products")
    assert sorted(products) == [
        ("acme", "A", "A", True, acme_ids[0]),  # each organization's stub is its own first job's
        ("globex", "A", "A", True, globex_id),
        ("initech", "A", "Lamp", False, initech_id),
    ]
    jobs = api.query("SELECT organization_id, count(*) FROM import_jobs WHERE status = 'COMPLETED' GROUP BY 1")
    assert sorted(jobs) == [("acme", 2), ("globex", 1), ("initech", 1)]
