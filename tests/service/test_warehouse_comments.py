"""The warehouse explains itself: every table and column has a comment, in the analysts' copy too."""

from __future__ import annotations

from tests.conftest import Api


def test_every_table_and_column_of_the_analysts_copy_has_a_comment(api: Api) -> None:
    api.run("inventory", [{"skuId": "A", "locationId": "WH1", "reorderPoint": 4}])
    tables = api.query("SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'main'")
    assert len(tables) == 10 and all(comment for _, comment in tables), tables
    columns = api.query(
        "SELECT table_name, column_name, comment FROM duckdb_columns()"
        " WHERE table_name IN (SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main')"
    )
    assert len(columns) > 70
    missing = [(table, column) for table, column, comment in columns if not comment]
    assert missing == []
    described = {(table, column): comment for table, column, comment in columns}
    assert described[("inventory_levels", "min_quantity")].startswith("From inventory `reorderPoint`:")
    assert "acme-WH1" in described[("inventory_levels", "location_id")]
    assert "as sent" in described[("locations", "code")]
    assert described[("import_jobs", "status")].startswith("PENDING (queued)")
