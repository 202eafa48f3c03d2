"""Property: any sequence of imports leaves the warehouse equal to a simple reference model.

Each import goes through the real pipeline minus Redis: staging of the JSON body, contract,
transform and the one-transaction merge into a real DuckDB file. The model applies the same rows
one by one, in order, as CONTRACT.md describes; the warehouse must match it after every import and
never hold a key twice.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.common import validate
from service import warehouse
from service.job import JobRecord, iso, utc_now
from service.job_files import JobFiles
from service.kinds import KINDS
from service.prepare import read_prepared, stored_prepared, write_prepared
from service.staging import stage_body
from service.warehouse import Merged
from tests.conftest import S3Server, new_catalog

ORG = "acme"
ORGANIZATIONS = st.sampled_from([ORG, "globex"])
SKUS = st.sampled_from(["A", "B", "C", " A "])
LOCATIONS = st.sampled_from(["L1", "L2"])
QUANTITY = st.one_of(st.integers(0, 5), st.just(-1), st.just("x"))  # -1 and "x" are bad rows

inventory_row = st.fixed_dictionaries(
    {"skuId": SKUS, "locationId": LOCATIONS}, optional={"quantityOnHand": QUANTITY, "reorderPoint": st.integers(0, 3)}
)
catalog_row = st.fixed_dictionaries({"externalId": SKUS}, optional={"name": st.sampled_from(["n1", "n2"])})
po_line = st.fixed_dictionaries({"skuId": SKUS, "quantity": st.sampled_from([1, 2, 0]), "unitCost": st.just(1.5)})
po_row = st.fixed_dictionaries(
    {
        "externalPoNumber": st.sampled_from(["P1", "P2"]),
        "supplierId": st.sampled_from(["S1", "S2"]),
        "destinationLocationId": LOCATIONS,
        "lines": st.lists(po_line, min_size=0, max_size=3),
    }
)
one_import = st.one_of(
    st.tuples(st.just("inventory"), st.lists(inventory_row, max_size=6)),
    st.tuples(st.just("catalog"), st.lists(catalog_row, max_size=4)),
    st.tuples(st.just("purchase-orders"), st.lists(po_row, max_size=3)),
)
imports = st.lists(one_import, min_size=1, max_size=5)
imports_of_organizations = st.lists(st.tuples(ORGANIZATIONS, one_import), min_size=1, max_size=8)


class Model:
    """The warehouse as CONTRACT.md describes it, applied row by row."""

    def __init__(self, organization: str = ORG) -> None:
        self.organization = organization
        self.products: dict[str, tuple[str, bool]] = {}
        self.locations: dict[str, bool] = {}
        self.suppliers: dict[str, bool] = {}
        self.inventory: dict[tuple[str, str], tuple[float, float]] = {}
        self.purchase_orders: dict[str, tuple[str, str, list[tuple[int, str, float]]]] = {}

    def stub_product(self, sku: str) -> None:
        self.products.setdefault(sku, (sku, True))

    def stub_location(self, location: str) -> None:
        self.locations.setdefault(f"{self.organization}-{location}", True)

    def apply(self, kind: str, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            getattr(self, "apply_" + kind.replace("-", "_"))(row)

    def apply_inventory(self, row: dict[str, Any]) -> None:
        quantity = row.get("quantityOnHand", 0)
        if not isinstance(quantity, int) or quantity < 0:
            return
        sku = row["skuId"].strip()
        self.stub_product(sku)
        self.stub_location(row["locationId"])
        self.inventory[(sku, f"{self.organization}-{row['locationId']}")] = (
            float(quantity),
            float(row.get("reorderPoint", 0)),
        )

    def apply_catalog(self, row: dict[str, Any]) -> None:
        sku = row["externalId"].strip()
        self.products[sku] = (row.get("name", sku), False)

    def apply_purchase_orders(self, row: dict[str, Any]) -> None:
        lines = row["lines"]
        if not lines or any(line["quantity"] <= 0 for line in lines):
            return
        self.suppliers.setdefault(row["supplierId"], True)
        self.stub_location(row["destinationLocationId"])
        for line in lines:
            self.stub_product(line["skuId"].strip())
        self.purchase_orders[row["externalPoNumber"]] = (
            row["supplierId"],
            f"{self.organization}-{row['destinationLocationId']}",
            [(i + 1, line["skuId"].strip(), float(line["quantity"])) for i, line in enumerate(lines)],
        )


def _prepare(
    directory: Path, kind: str, rows: list[dict[str, Any]], organization: str = ORG, *, alone: bool = False
) -> tuple[Merged, JobRecord]:
    """Stage, validate and transform as the API and prepare do, through the prepared files apply reads: a job
    applied `alone` and written a file each, as a large job is, is merged from its files as they are."""
    contract = KINDS[kind].contract
    files = JobFiles.of(directory / "staging", organization, secrets.token_hex(16))
    files.directory.mkdir(parents=True, exist_ok=True)
    files.body.write_text(json.dumps({contract.array_key: rows}))
    staged = stage_body(contract, files.body, files.rows, files.lines if contract.has_lines else None)
    raw_lines = pl.read_parquet(files.lines) if contract.has_lines else None
    validated = validate(contract, pl.read_parquet(staged.rows_path), raw_lines)
    write_prepared(files, KINDS[kind].prepare(validated, organization), in_one_file=len(rows) % 2 == 0)  # both ways
    now = iso(utc_now())
    record = JobRecord(files.job_id, organization, kind, "PROCESSING", len(rows), now, started_at=now)
    stored = stored_prepared(files, contract.has_lines) if alone else None
    return stored or read_prepared(files, contract.has_lines), record


@dataclass(frozen=True)
class Backend:
    """Opens the warehouse of one example's directory: the DuckDB file, or a lake with a catalog of its own;
    and how many examples to try on it (a lake's transaction costs catalog round trips: fewer)."""

    open: Callable[[Path], warehouse.Warehouse]
    examples: int


@pytest.fixture(params=["file", *(pytest.param(name, marks=pytest.mark.lake) for name in ("lake", "lake on S3"))])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "file":
        return Backend(lambda directory: warehouse.Warehouse(directory, directory / "warehouse.duckdb"), 20)
    from service.lake import Lake

    postgres_dir = request.getfixturevalue("postgres_dir")
    if request.param == "lake":
        return Backend(lambda directory: Lake(directory, new_catalog(postgres_dir), directory / "lake"), 8)
    server: S3Server = request.getfixturevalue("s3_server")

    def on_s3(directory: Path) -> Lake:
        data_path = server.new_data_path()
        return Lake(directory, new_catalog(postgres_dir), data_path, s3=server.access)

    return Backend(on_s3, 4)


def _apply(live: warehouse.Warehouse, directory: Path, kind: str, rows: list[dict[str, Any]]) -> None:
    _apply_together(live, directory, kind, [rows])


def _apply_together(
    live: warehouse.Warehouse,
    directory: Path,
    kind: str,
    imports: list[list[dict[str, Any]]],
    organizations: Any = None,
) -> None:
    """Consecutive imports of one kind in one transaction, as the applier applies a run of small jobs
    (of `organizations`, one per import, if given)."""
    owners = organizations or [ORG] * len(imports)
    alone = len(imports) == 1
    jobs = [_prepare(directory, kind, rows, owner, alone=alone) for rows, owner in zip(imports, owners, strict=True)]
    with live.cursor() as con:
        warehouse.apply_jobs(con, KINDS[kind].tables, jobs)


@contextlib.contextmanager
def _held(backend: Backend, directory: Path) -> Iterator[warehouse.Warehouse]:
    live = backend.open(directory)
    assert live.try_hold()
    try:
        yield live
    finally:
        live.release()


def _assert_matches(live: warehouse.Warehouse, directory: Path, model: Model) -> None:
    with live.cursor() as con:

        def _read(directory: Path, sql: str) -> list[tuple[Any, ...]]:
            return con.execute(sql).fetchall()

        _compare(directory, model, _read)


def _compare(directory: Path, model: Model, _read: Any) -> None:
    mine = f" WHERE organization_id = '{model.organization}'"
    assert _read(directory, f"SELECT external_id, name, auto_created FROM products{mine} ORDER BY 1") == sorted(
        (k, *v) for k, v in model.products.items()
    )
    assert _read(directory, f"SELECT location_id, auto_created FROM locations{mine} ORDER BY 1") == sorted(
        model.locations.items()
    )
    assert _read(directory, f"SELECT external_id, auto_created FROM suppliers{mine} ORDER BY 1") == sorted(
        model.suppliers.items()
    )
    assert _read(
        directory,
        f"SELECT sku_id, location_id, quantity_on_hand, min_quantity FROM inventory_levels{mine} ORDER BY 1, 2",
    ) == sorted((*k, *v) for k, v in model.inventory.items())
    assert _read(
        directory,
        f"SELECT external_po_number, supplier_id, destination_location_id FROM purchase_orders{mine} ORDER BY 1",
    ) == sorted((k, v[0], v[1]) for k, v in model.purchase_orders.items())
    assert _read(
        directory,
        f"SELECT external_po_number, line_number, sku_id, quantity FROM purchase_order_lines{mine} ORDER BY 1, 2",
    ) == sorted((po, *line) for po, v in model.purchase_orders.items() for line in v[2])
    for tables in (kind.tables for kind in KINDS.values()):
        for spec in (tables.rows, tables.lines):
            if spec is None:
                continue
            columns = ", ".join(("organization_id", *spec.key))
            duplicates = _read(
                directory, f"SELECT {columns}, count(*) FROM {spec.name} GROUP BY ALL HAVING count(*) > 1"
            )
            assert duplicates == [], f"duplicate keys in {spec.name}"


def _property(backend: Backend, check: Callable[[Backend, Any], None], sequences: Any = imports) -> None:
    """Run `check` on as many generated sequences of imports as the backend takes."""
    examples = settings(
        max_examples=backend.examples, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )  # fmt: skip
    examples(given(sequence=sequences)(lambda sequence: check(backend, sequence)))()


def _each_import_twice(backend: Backend, sequence: list[tuple[str, list[dict[str, Any]]]]) -> None:
    model = Model()
    with tempfile.TemporaryDirectory() as name, _held(backend, Path(name)) as live:
        directory = Path(name)
        for kind, rows in sequence:
            _apply(live, directory, kind, rows)
            model.apply(kind, rows)
            _assert_matches(live, directory, model)
            _apply(live, directory, kind, rows)  # the same import again changes nothing
            _assert_matches(live, directory, model)


def _runs_together(backend: Backend, sequence: list[tuple[str, list[dict[str, Any]]]]) -> None:
    model = Model()
    with tempfile.TemporaryDirectory() as name, _held(backend, Path(name)) as live:
        directory = Path(name)
        for kind, run in itertools.groupby(sequence, key=lambda each: each[0]):
            imports = [rows for _, rows in run]
            _apply_together(live, directory, kind, imports)
            for rows in imports:
                model.apply(kind, rows)
            _assert_matches(live, directory, model)


def _organizations_together(backend: Backend, sequence: list[tuple[str, tuple[str, list[dict[str, Any]]]]]) -> None:
    models = {organization: Model(organization) for organization in ("acme", "globex")}
    with tempfile.TemporaryDirectory() as name, _held(backend, Path(name)) as live:
        directory = Path(name)
        for kind, run in itertools.groupby(sequence, key=lambda each: each[1][0]):
            imports = list(run)
            _apply_together(live, directory, kind, [rows for _, (_, rows) in imports], [org for org, _ in imports])
            for organization, (_, rows) in imports:
                models[organization].apply(kind, rows)
            for model in models.values():
                _assert_matches(live, directory, model)
        with live.cursor() as con:  # every row was last written by a job of its own organization
            for table in warehouse.TABLES[:-1]:
                (foreign,) = con.execute(
                    f"SELECT count(*) FROM {table} t JOIN import_jobs j ON j.job_id = t.last_job_id"
                    " WHERE j.organization_id <> t.organization_id"
                ).fetchone() or (None,)
                assert foreign == 0, table


def test_warehouse_equals_reference_model(backend: Backend) -> None:
    _property(backend, _each_import_twice)


def test_consecutive_imports_applied_together_equal_the_model(backend: Backend) -> None:
    """What the worker does with a queue of small jobs: each run of one kind in one transaction."""
    _property(backend, _runs_together)


def test_jobs_of_several_organizations_applied_together_equal_each_ones_model(backend: Backend) -> None:
    """What the applier does with the small jobs of several organizations ready at once: one transaction."""
    _property(backend, _organizations_together, imports_of_organizations)
