"""The example queries of docs/analysts.md, run as written against a warehouse the real service filled."""

from __future__ import annotations

import datetime
import re
from typing import Any

import duckdb
import pytest

from tests.conftest import Api
from tests.service.processes import REPOSITORY

GUIDE = REPOSITORY / "docs" / "analysts.md"


def queries() -> dict[str, str]:
    """Each ```sql block of the guide that starts with `-- query: <name>`."""
    blocks = re.findall(r"```sql\n-- query: (.+?)\n(.*?)```", GUIDE.read_text(), re.S)
    return {name: sql for name, sql in blocks}


@pytest.fixture(params=["file", pytest.param("lake", marks=pytest.mark.lake)])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The warehouse the service fills: the DuckDB file (read through its copy) or a lake (attached)."""
    if request.param == "lake":
        monkeypatch.setenv("STOCKYARD_WAREHOUSE", "ducklake")
        monkeypatch.setenv("STOCKYARD_LAKE_CATALOG", request.getfixturevalue("lake_catalog"))
    return str(request.param)


def analyst(api: Api) -> duckdb.DuckDBPyConnection:
    """The analyst's read-only connection, as the guide opens it: the copy, or the lake with `USE lake`."""
    if not api.settings.is_lake:
        return duckdb.connect(str(api.settings.analytics_path), read_only=True)
    from service.lake import LAKE, attach_sql, load_extensions

    con = duckdb.connect()
    load_extensions(con)
    con.execute(attach_sql(api.settings.effective_lake_catalog, read_only=True))
    con.execute(f"USE {LAKE}")
    return con


def run(api: Api, sql: str) -> list[list[tuple[Any, ...]]]:
    """Every statement of a block, in order; the rows of each one that returns rows."""
    with analyst(api) as con:
        results = []
        for statement in (s.strip() for s in sql.split(";\n")):
            if statement:
                rows = con.execute(statement.rstrip(";")).fetchall()
                if not statement.upper().startswith("SET"):
                    results.append(rows)
        return results


def test_every_example_query_of_the_analysts_guide_answers_what_it_says(backend: str, api: Api) -> None:
    assert api.run("catalog", [{"externalId": "A", "name": "Blue mug"}])["status"] == "COMPLETED"
    inventory = api.run(
        "inventory",
        [
            {"skuId": "A", "locationId": "WH1", "quantityOnHand": 3, "quantityReserved": 1, "reorderPoint": 5},
            {"skuId": "B", "locationId": "WH1", "quantityOnHand": 10, "reorderPoint": 2},
            {"skuId": "C", "locationId": "WH2", "quantityOnHand": 0, "reorderPoint": 1},
            {"skuId": "D", "locationId": "WH2", "quantityOnHand": 0},
        ],
    )
    line = {"quantity": 1, "unitCost": 2.5}
    api.run(
        "purchase-orders",
        [
            {"externalPoNumber": "PO-1", "supplierId": "SUP-1", "destinationLocationId": "WH1", "status": "submitted",
             "lines": [{**line, "skuId": "A", "quantity": 10}, {**line, "skuId": "B", "quantity": 5}]},
            {"externalPoNumber": "PO-2", "supplierId": "SUP-1", "destinationLocationId": "WH1", "status": "RECEIVED",
             "lines": [{**line, "skuId": "A", "quantity": 7}]},
            {"externalPoNumber": "PO-3", "supplierId": "SUP-1", "destinationLocationId": "WH1",
             "lines": [{**line, "skuId": "A", "quantity": 2}]},
        ],
    )  # fmt: skip
    api.run(
        "demand-history",
        [
            {
                "skuId": "A",
                "locationId": "WH1",
                "weekStarting": "2026-12-02",
                "actualDemand": 10,
                "forecastedDemand": 8,
            },
            {"skuId": "B", "locationId": "WH1", "weekStarting": "2026-11-30", "actualDemand": 4},
            {"skuId": "A", "locationId": "WH1", "weekStarting": "2026-12-07", "actualDemand": 6, "forecastedDemand": 9},
        ],
    )
    found = queries()
    assert len(found) == 5
    assert run(api, found["stock at or below reorder point"]) == [
        [("WH1", "A", 3.0, 1.0, 5.0), ("WH2", "C", 0.0, 0.0, 1.0)]
    ]
    assert run(api, found["open purchase-order quantity per sku"]) == [[("A", 12.0, 2), ("B", 5.0, 1)]]
    monday, next_monday = datetime.date(2026, 11, 30), datetime.date(2026, 12, 7)
    assert run(api, found["weekly demand against forecast"]) == [
        [(monday, 14.0, 12.0, 2.0), (next_monday, 6.0, 9.0, -3.0)]
    ]
    assert run(api, found["auto-created stubs to complete"]) == [
        [("location", "WH1"), ("location", "WH2"), ("product", "B"), ("product", "C"), ("product", "D"),
         ("supplier", "SUP-1")]
    ]  # fmt: skip
    job = inventory["jobId"]
    changed = found["what a job changed"].replace("3f2a9c1b7d4e4f0a9b8c7d6e5f4a3b2c", job)
    (record,), per_table = run(api, changed)
    assert record[:4] == ("inventory", "COMPLETED", 4, 0) and record[4] is not None
    assert per_table == [("inventory_levels", 4), ("locations", 2), ("products", 3)]
