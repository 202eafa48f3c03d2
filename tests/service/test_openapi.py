"""The OpenAPI document explains every field, and its pages work with no network (no CDN)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from contracts.purchase_orders import PURCHASE_ORDER_STATUSES
from service.kinds import KINDS
from tests.conftest import Api
from tests.service.processes import Stockyard


def _document(api: Api) -> dict[str, Any]:
    document: dict[str, Any] = api.client.get("/schema/openapi.json").json()
    return document


def _properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = schema["properties"]
    return found


def test_every_field_of_the_six_bodies_has_a_description_and_a_real_example(api: Api) -> None:
    paths = _document(api)["paths"]
    for kind, entry in KINDS.items():
        content = paths[f"/api/import/{kind}"]["post"]["requestBody"]["content"]["application/json"]
        contract = entry.contract
        row = content["schema"]["properties"][contract.array_key]["items"]
        described = _properties(row) | (_properties(row["properties"]["lines"]["items"]) if contract.has_lines else {})
        for field in (*contract.fields, *contract.line_fields):
            schema = described[field.name]
            assert len(schema["description"]) > 20, (kind, field.name)
            assert schema["examples"][0] not in ("string", 0, None), (kind, field.name)
        (example,) = content["example"][contract.array_key]
        assert set(example) == {f.name for f in contract.fields} | ({"lines"} if contract.has_lines else set())
    header = paths["/api/import/purchase-orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    status = header["properties"]["purchaseOrders"]["items"]["properties"]["status"]
    assert status["enum"] == list(PURCHASE_ORDER_STATUSES)
    lines = header["properties"]["purchaseOrders"]["items"]["properties"]["lines"]
    quantity = lines["items"]["properties"]["quantity"]["oneOf"][0]
    assert lines["minItems"] == 1 and quantity["exclusiveMinimum"] == 0


def test_the_envelope_the_status_and_the_error_entry_are_described(api: Api) -> None:
    schemas = _document(api)["components"]["schemas"]
    for name in ("ImportAccepted", "JobStatusView", "JobSummaryView", "RowIssue", "ErrorBody", "IssuePage"):
        for field, schema in _properties(schemas[name]).items():
            assert schema.get("description"), (name, field)
    assert schemas["JobStatus"]["enum"] == ["PENDING", "PROCESSING", "COMPLETED", "FAILED"]
    assert "invalid_type" in _properties(schemas["RowIssue"])["code"]["description"]


def test_the_pages_load_every_script_style_and_icon_from_the_service_itself(api: Api) -> None:
    for page in ("/schema", "/schema/swagger"):
        html = api.client.get(page).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert len(urls) >= 3
        for url in urls:
            assert url.startswith("/schema/assets/"), url
            fetched = api.client.get(url)
            assert fetched.status_code == 200 and len(fetched.content) > 100, url


@pytest.mark.slow
def test_swagger_ui_renders_every_operation_in_a_browser_with_no_network(stockyard: Stockyard, browser: Any) -> None:
    stockyard.api()
    page = browser.new_page()
    outside: list[str] = []
    page.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith(stockyard.url) else (
            outside.append(route.request.url), route.abort())[1],
    )  # fmt: skip
    page.goto(f"{stockyard.url}/schema")
    page.locator(".opblock").nth(17).wait_for()
    assert page.locator(".opblock").count() == len(_paths_and_methods(stockyard))
    assert outside == []
    page.locator(".opblock-summary-path", has_text="/api/import/purchase-orders").click()
    page.locator(".opblock-body").get_by_text("PO-1001").first.wait_for()  # the body's real example


def _paths_and_methods(stockyard: Stockyard) -> list[tuple[str, str]]:
    document = httpx.get(f"{stockyard.url}/schema/openapi.json", timeout=10).json()
    return [(path, method) for path, item in document["paths"].items() for method in item]
