"""The jobs page in a real headless Chromium, against real API and worker processes: a person pastes a
key, sees the jobs with their progress and errors (row values shown as text, never run), downloads the
failed rows and cancels a job; nothing is fetched from outside the service."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.service.processes import Stockyard

pytestmark = pytest.mark.slow

HOSTILE = '<img src=x onerror="window.hacked=1"><script>window.hacked=2</script>'


def test_a_person_follows_jobs_reads_errors_as_text_downloads_failed_rows_and_cancels(
    stockyard: Stockyard, browser: Any, tmp_path: Path
) -> None:
    stockyard.api()
    worker = stockyard.start("worker")
    good = stockyard.accept("inventory", {"levels": [{"skuId": "A", "locationId": "WH1", "quantityOnHand": 3}]})
    bad = stockyard.accept(
        "inventory",
        {
            "levels": [
                {"skuId": "B", "locationId": "WH1", "quantityOnHand": HOSTILE},
                {"skuId": "C", "locationId": "WH1"},
                {"skuId": "C", "locationId": "WH1"},
            ]
        },
    )
    stockyard.wait_finished([good, bad])
    worker.kill_group(signal.SIGKILL)  # a job accepted now stays PENDING: there is one to cancel
    worker.wait(10)
    pending = stockyard.accept("suppliers", {"suppliers": [{"externalId": "S"}]})

    page = browser.new_page(accept_downloads=True)
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(stockyard.url) else outside.append(r.url))
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{stockyard.url}/ui")
    page.fill("#key", stockyard.key)
    page.click("button[type=submit]")
    rows = page.locator("#job-rows tr")
    rows.nth(2).wait_for()
    assert rows.count() == 3
    assert page.evaluate("sessionStorage.getItem('stockyard-api-key')") == stockyard.key
    assert page.evaluate("localStorage.length") == 0
    assert page.locator(f"#job-rows tr[data-job-id='{pending}'] .status").inner_text() == "PENDING"

    page.click(f"#job-rows tr[data-job-id='{bad}']")
    page.locator("#errors tbody tr").first.wait_for()
    assert page.locator("#errors-total").inner_text() == "(1)"
    error_cells = page.locator("#errors tbody tr").first.locator("td").all_inner_texts()
    assert error_cells[:3] == ["0", "quantityOnHand", "invalid_type"] and error_cells[4] == HOSTILE
    assert page.locator("#warnings tbody tr").first.locator("td").nth(2).inner_text() == "duplicate_key"
    assert page.locator("#errors img, #errors script").count() == 0
    assert page.evaluate("window.hacked") is None

    page.select_option("#download-format", "csv")
    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "failed.csv"
    download.value.save_as(saved)
    assert download.value.suggested_filename == f"inventory-{bad}.failed.csv"
    lines = saved.read_text().splitlines()
    assert lines[0].startswith("skuId,locationId,quantityOnHand") and len(lines) == 2 and lines[1].startswith("B,")

    page.click(f"#job-rows tr[data-job-id='{pending}']")
    page.locator("#cancel:visible").click()
    page.locator(f"#job-rows tr[data-job-id='{pending}'] .status-FAILED").wait_for()
    assert stockyard.status(pending)["errors"][0]["code"] == "cancelled"
    page.locator("#errors tbody tr").first.wait_for()
    assert page.locator("#errors tbody tr").first.locator("td").nth(2).inner_text() == "cancelled"
    assert outside == []

    fresh = browser.new_page()
    fresh.goto(f"{stockyard.url}/ui")
    assert fresh.evaluate("sessionStorage.getItem('stockyard-api-key')") is None  # another tab: no key
    assert fresh.locator("#jobs").is_hidden()


def test_a_key_without_read_scope_is_told_what_to_do(stockyard: Stockyard, browser: Any) -> None:
    from service.auth import KeyStore, Scope

    stockyard.api()
    _, write_only = KeyStore(stockyard.data_dir / "keys.sqlite3").create("acme", [Scope.IMPORT_WRITE])
    page = browser.new_page()
    page.goto(f"{stockyard.url}/ui")
    page.fill("#key", write_only)
    page.click("button[type=submit]")
    page.locator("#message:visible").wait_for()
    assert "import:read" in page.locator("#message").inner_text()
    page.fill("#key", "sy_not_a_key")
    page.click("button[type=submit]")
    page.wait_for_function("document.getElementById('message').textContent.includes('API key')")
