"""The insights on /admin in a real headless Chromium, at 400 and 1280 px: every chart drawn with its table of
numbers, the numbers of the records sent, and the range selector changing them.

Screenshots are saved under test-artifacts/insights/.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.ingest.test_ingest_insights import a_week
from tests.ingest_support import ADMIN_KEY, Client, IngestFactory, upload
from tests.support import ARTIFACTS, screenshot

CHARTS = ["received", "uploads", "feedback", "categories", "models", "conversations", "turns", "telemetry"]


@pytest.fixture
def ingest_database() -> dict[str, Any]:
    """The page, not the storage, is under test here: the embedded SQLite (the storage tests run both)."""
    return {}


async def open_admin(browser: Browser, client: Client, width: int) -> Page:
    context = await browser.new_context(
        http_credentials={"username": "admin", "password": ADMIN_KEY}, viewport={"width": width, "height": 900}
    )
    page = await context.new_page()
    await page.goto(str(client.make_url("/admin")))
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page


async def show(page: Page, since: str, until: str, by: str = "") -> None:
    await page.fill("#in-since", since)
    await page.fill("#in-until", until)
    await page.select_option("#in-by", by)
    await page.click("#insights-form button[type=submit]")
    await expect(page.locator("body")).to_have_attribute("data-insights", f"{since}..{until}/{by or 'day'}")


async def table_row(page: Page, chart: str, first: str) -> list[str]:
    row = page.locator(f"#chart-{chart} tbody tr").filter(has=page.locator("th", has_text=first))
    return await row.locator("td").all_text_contents()


@pytest.mark.parametrize("width", [400, 1280])
async def test_the_charts_show_the_numbers_sent_and_the_range_changes_them(
    browser: Browser, make_ingest: IngestFactory, width: int
) -> None:
    client = await make_ingest()
    await a_week(client)
    page = await open_admin(browser, client, width)
    await show(page, "2026-11-16", "2026-11-22")
    figures = page.locator("#insights-charts figure")
    assert [await f.get_attribute("id") for f in await figures.all()] == [f"chart-{c}" for c in CHARTS]
    for chart in CHARTS:
        image = page.locator(f"#chart-{chart} img")
        assert await image.evaluate("i => i.complete && i.naturalWidth > 0"), chart  # drawn, not a broken image
        assert await image.get_attribute("alt")
        assert await page.locator(f"#chart-{chart} details table tbody tr").count() > 0
    assert await table_row(page, "feedback", "2026-11-20") == ["7", "3", "70%"]
    assert await table_row(page, "models", "openai/gpt-4o") == ["7", "3", "70%"]
    assert await page.locator("#chart-feedback img").get_attribute("alt") == (
        "Feedback: 8 positive, 4 negative (67% positive)."
    )
    assert await page.evaluate("document.documentElement.scrollWidth") <= width
    await page.get_by_label("Feedback: the numbers", exact=True).click()  # each says whose numbers it shows
    await expect(page.locator("#chart-feedback details table")).to_be_visible()
    await page.locator("#chart-feedback").scroll_into_view_if_needed()
    await screenshot(page, "insights", f"01-week-{width}px")
    section = page.locator("section[aria-labelledby=insights-title]")
    await section.screenshot(path=str(ARTIFACTS / "insights" / f"01-week-{width}px-charts.png"))

    await show(page, "2026-11-21", "2026-11-21")
    assert await table_row(page, "feedback", "2026-11-21") == ["0", "1", "0%"]
    assert await page.locator("#chart-feedback tbody tr").count() == 1
    await show(page, "2026-11-09", "2026-11-29", "week")
    assert await table_row(page, "feedback", "2026-11-16") == ["8", "4", "67%"]
    assert await page.locator("#chart-feedback thead th").first.text_content() == "Week of"


async def test_a_preset_shows_the_last_days_and_refused_uploads_are_listed(
    browser: Browser, make_ingest: IngestFactory
) -> None:
    client = await make_ingest()
    assert (await upload(client, b"not an archive", "broken-batch")).status == 400
    page = await open_admin(browser, client, 1280)
    today = datetime.now(UTC).date()
    await expect(page.locator("body")).to_have_attribute(
        "data-insights", f"{today - timedelta(days=29)}..{today}/day"
    )  # the last 30 days at first
    await page.click("#insights-form [data-days='7']")
    await expect(page.locator("body")).to_have_attribute("data-insights", f"{today - timedelta(days=6)}..{today}/day")
    cells = await page.locator("#refusals tbody tr td").all_inner_texts()
    assert cells[1:3] == ["broken-batch", "rejected"]
    assert cells[4].startswith("not a readable tar.gz archive")
    assert await table_row(page, "uploads", today.isoformat()) == ["0", "1"]
    await page.locator("#refusals").scroll_into_view_if_needed()
    await screenshot(page, "insights", "02-refused")
