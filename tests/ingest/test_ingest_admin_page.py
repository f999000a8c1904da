"""/admin in a real headless Chromium: models sorted and filtered, uploads, the deletion form.

Screenshots are saved under test-artifacts/admin/.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.ingest_support import (
    ADMIN_KEY,
    Client,
    IngestFactory,
    admin_headers,
    member,
    records_archive,
    tar_gz,
    upload,
)
from tests.support import screenshot
from tests.telemetry_support import CLIENT_ID, ago_within_one_day, event

OTHER = "6d1c2a9e-3b7f-4c1a-8e2d-9f0a1b2c3d4e"
THIRD = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


@pytest.fixture
def ingest_database() -> dict[str, Any]:
    """The page, not the storage, is under test here: the embedded SQLite (the storage tests run both)."""
    return {}


async def seed(client: Client) -> None:
    events = [
        event(ago_within_one_day(hours=5), "all-MiniLM-L6-v2"),
        event(ago_within_one_day(hours=4), "all-MiniLM-L6-v2", client_id=OTHER),
        event(ago_within_one_day(hours=3), "all-MiniLM-L6-v2", client_id=THIRD),
        event(ago_within_one_day(hours=2), "BAAI/bge-small-en-v1.5") | {"embedding_dimension": 512},
        event(ago_within_one_day(hours=1), "BAAI/bge-small-en-v1.5"),
        event(ago_within_one_day(hours=1), "BAAI/bge-small-en-v1.5")
        | {"timestamp": event(ago_within_one_day(minutes=30))["timestamp"]},
        event(ago_within_one_day(minutes=5), "intfloat/e5-small", client_id=THIRD) | {"device_type": "gpu"},
    ]
    resp = await client.post("/api/v1/telemetry", json=events)
    assert (await resp.json())["accepted"] == 7
    assert (await upload(client, records_archive("c-1"), "batch-a")).status == 202
    assert (await upload(client, records_archive("c-1"), "batch-b")).status == 202


async def open_admin(browser: Browser, client: Client, **context: Any) -> Page:
    page = await (await browser.new_context(**context)).new_page()
    await page.goto(str(client.make_url("/admin")))
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page


async def model_names(page: Page) -> list[str]:
    return await page.locator("#models tbody tr td:first-child").all_inner_texts()


async def test_models_can_be_sorted_and_filtered(browser: Browser, make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    await seed(client)
    page = await open_admin(browser, client, http_credentials={"username": "admin", "password": ADMIN_KEY})
    # Default order: most installations first.
    assert await model_names(page) == [
        "all-MiniLM-L6-v2",
        "BAAI/bge-small-en-v1.5",
        "BAAI/bge-small-en-v1.5",
        "intfloat/e5-small",
    ]
    first = page.locator("#models tbody tr").first
    await expect(first.locator("td").nth(7)).to_have_text("3")  # installations
    await expect(page.locator("#model-count")).to_have_text("4 of 4 models")
    await screenshot(page, "admin", "01-overview")

    events_header = page.locator('#models th[data-key="events"]')
    await events_header.get_by_role("button").click()
    await expect(events_header).to_have_attribute("aria-sort", "descending")
    counts = await page.locator("#models tbody tr td:nth-child(9)").all_inner_texts()
    assert counts == sorted(counts, key=int, reverse=True)
    await events_header.get_by_role("button").click()
    await expect(events_header).to_have_attribute("aria-sort", "ascending")
    counts = await page.locator("#models tbody tr td:nth-child(9)").all_inner_texts()
    assert counts == sorted(counts, key=int)

    await page.locator('#models th[data-key="model_name"]').get_by_role("button").click()
    assert await model_names(page) == sorted(await model_names(page), key=str.lower)

    await page.get_by_label("Filter").fill("gpu")
    assert await model_names(page) == ["intfloat/e5-small"]
    await expect(page.locator("#model-count")).to_have_text("1 of 4 models")
    await page.get_by_label("Filter").fill("bge 512")
    assert await model_names(page) == ["BAAI/bge-small-en-v1.5"]
    await screenshot(page, "admin", "02-filtered")

    # Uploads and their de-duplication figures.
    rows = page.locator("#uploads tbody tr")
    await expect(rows).to_have_count(2)
    await expect(page.locator("#total-records")).to_have_text("4")
    await expect(page.locator("#total-duplicate_records")).to_have_text("2")
    await client.close()


async def test_the_deletion_form_confirms_then_removes_a_clients_contributions(
    browser: Browser, make_ingest: IngestFactory
) -> None:
    client = await make_ingest()
    await seed(client)
    page = await open_admin(browser, client, http_credentials={"username": "admin", "password": ADMIN_KEY})
    client_id = page.get_by_label("Client id")
    await client_id.fill("not a uuid")
    await page.get_by_role("button", name="Delete contributions").click()
    await expect(page.locator("#message")).to_contain_text("Enter the installation's client id")
    await expect(client_id).to_have_attribute("aria-invalid", "true")

    await client_id.fill(CLIENT_ID)
    await page.get_by_role("button", name="Delete contributions").click()
    dialog = page.get_by_role("dialog", name="Delete this installation's contributions?")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#confirm-client")).to_have_text(CLIENT_ID)
    await screenshot(page, "admin", "03-confirm-deletion")
    await page.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    assert len(await model_names(page)) == 4  # nothing deleted on Cancel

    await page.get_by_role("button", name="Delete contributions").click()
    await dialog.get_by_role("button", name="Delete", exact=True).click()
    await expect(page.locator("#message")).to_have_text("Deleted 3 contributions (4 events).")
    # CLIENT_ID contributed bge (both rows) and one of MiniLM's three installations.
    assert await model_names(page) == ["all-MiniLM-L6-v2", "intfloat/e5-small"]
    await expect(page.locator("#models tbody tr").first.locator("td").nth(7)).to_have_text("2")
    await expect(page.locator("#deletions tbody tr")).to_have_count(1)
    await expect(page.locator("#deletions tbody tr td").nth(1)).to_have_text("admin")
    await screenshot(page, "admin", "04-after-deletion")
    await client.close()


async def test_the_page_asks_for_the_admin_key(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    anonymous = await client.get("/admin")
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"].startswith('Basic realm="lightspeed-ingest"')
    assert "default-src 'none'" in anonymous.headers["Content-Security-Policy"]
    assert "Sign in required" in await anonymous.text()
    basic = base64.b64encode(b"anyone:wrong").decode()
    assert (await client.get("/admin", headers={"Authorization": f"Basic {basic}"})).status == 403
    for asset in ("admin.js", "admin.css", "page.js", "page.css"):
        assert (await client.get(f"/admin/{asset}", headers={"Authorization": f"Bearer {ADMIN_KEY}"})).status == 200
    assert (await client.get("/admin/other.js", headers={"Authorization": f"Bearer {ADMIN_KEY}"})).status == 404


async def test_wrong_admin_keys_are_throttled_per_address(make_ingest: Any) -> None:
    """Five wrong keys, then 429 with Retry-After even for the right key; a missing key does not count."""
    client = await make_ingest()
    for _ in range(3):
        assert (await client.get("/api/admin/v1/models")).status == 401
    statuses = [(await client.get("/api/admin/v1/models", headers=admin_headers("guess"))).status for _ in range(5)]
    blocked = await client.get("/api/admin/v1/models", headers=admin_headers())
    assert statuses == [403] * 5
    assert blocked.status == 429
    assert 55 <= int(blocked.headers["Retry-After"]) <= 60
    assert (await blocked.json())["detail"]["response"] == "Too many wrong admin keys"
    page = await client.get("/admin", headers=admin_headers())
    assert page.status == 429


# How many lines an element's text takes on screen.
LINES_OF_TEXT = """el => { const r = document.createRange(); r.selectNodeContents(el);
                         return new Set([...r.getClientRects()].map((b) => Math.round(b.top))).size; }"""


@pytest.mark.parametrize("width", [400, 1280])
async def test_admin_fits_the_screen_with_dates_whole(browser: Browser, make_ingest: IngestFactory, width: int) -> None:
    """At 400 px and 1280 px: the page does not scroll sideways, every date stays on one line, and the
    filter box shows its whole placeholder."""
    client = await make_ingest()
    await seed(client)
    assert (await upload(client, records_archive(), "batch-narrow")).status == 202
    page = await open_admin(
        browser,
        client,
        http_credentials={"username": "admin", "password": ADMIN_KEY},
        viewport={"width": width, "height": 900},
    )
    assert await page.evaluate("document.documentElement.scrollWidth") <= width
    dates = page.locator("td.when")
    assert await dates.count() >= 3
    for index in range(await dates.count()):
        lines = await dates.nth(index).evaluate(LINES_OF_TEXT)
        assert lines == 1, await dates.nth(index).inner_text()  # one line, not wrapped mid-value
    uploaded = await page.locator("#uploads td.when").first.inner_text()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", uploaded), uploaded
    fits = await page.locator("#model-filter").evaluate(
        """input => { const c = document.createElement("canvas").getContext("2d");
                     const s = getComputedStyle(input); c.font = `${s.fontSize} ${s.fontFamily}`;
                     const room = input.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
                     return c.measureText(input.placeholder).width <= room; }"""
    )
    assert fits
    await screenshot(page, "admin", f"05-{width}px")


async def test_the_erasure_form_confirms_then_erases_a_users_records(
    browser: Browser, make_ingest: IngestFactory
) -> None:
    client = await make_ingest()
    erased, kept = "e" * 64, "f" * 64
    for user, batch in ((erased, "batch-e"), (kept, "batch-f")):
        record = f'{{"user_id": "{user}", "timestamp": "2026-11-30T09:00:00Z", "sentiment": 1}}'.encode()
        assert (await upload(client, tar_gz([(member("feedback/f.json", record), record)]), batch)).status == 202
    page = await open_admin(browser, client, http_credentials={"username": "admin", "password": ADMIN_KEY})
    await expect(page.locator("#uploads tbody tr")).to_have_count(2)
    user_hash = page.get_by_label("User hash")
    await user_hash.fill("alice")
    await page.get_by_role("button", name="Erase records").click()
    await expect(page.locator("#message")).to_contain_text("Enter the user's keyed hash")
    await expect(user_hash).to_have_attribute("aria-invalid", "true")

    await user_hash.fill(erased.upper())  # pasted in capitals: the page writes it as the records do
    await page.get_by_role("button", name="Erase records").click()
    dialog = page.get_by_role("dialog", name="Erase this user's records?")
    await expect(page.locator("#confirm-user")).to_have_text(erased)
    await dialog.get_by_role("button", name="Erase", exact=True).click()
    await expect(page.locator("#message")).to_have_text("Erased 1 records (0 archives rewritten, 1 removed).")
    await expect(page.locator("#uploads tbody tr")).to_have_count(1)
    await expect(page.locator("#uploads tbody tr td").nth(1)).to_have_text("batch-f")
    await expect(page.locator("#erasures tbody tr td").nth(1)).to_have_text("admin")
    await screenshot(page, "admin", "06-after-erasure")
    await client.close()


async def test_the_feedback_browser_filters_pages_and_exports(browser: Browser, make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    records = [
        {"user_id": "u", "timestamp": f"2026-11-20T09:{n:02d}:00Z", "sentiment": 1, "user_feedback": f"fine {n}"}
        for n in range(50)
    ]
    records += [
        {
            "user_id": "u",
            "timestamp": f"2026-11-21T09:{n:02d}:00Z",
            "sentiment": -1,
            "categories": ["incorrect"],
            "user_feedback": f"wrong answer {n}",
            "user_question": "how?",
            "conversation_id": f"neg-{n}",
        }
        for n in range(3)
    ]
    entries = [
        (member(f"feedback/f{n}.json", data), data) for n, data in enumerate(json.dumps(r).encode() for r in records)
    ]
    assert (await upload(client, tar_gz(entries), "batch-fb")).status == 202
    turn = {"metadata": {"user_id": "u", "conversation_id": "neg-0", "timestamp": "2026-11-21T08:59:00Z"}}
    turn |= {"redacted_query": "how do I restart it?", "llm_response": "Run systemctl restart."}
    data = json.dumps(turn).encode()
    assert (await upload(client, tar_gz([(member("transcripts/u/neg-0/t.json", data), data)]), "batch-t")).status == 202
    page = await open_admin(
        browser, client, http_credentials={"username": "admin", "password": ADMIN_KEY}, accept_downloads=True
    )
    rows = page.locator("#feedback tbody tr")
    await expect(rows).to_have_count(50)  # the first page, newest first
    await expect(rows.first.locator("td").nth(1)).to_have_text("negative")
    await page.get_by_role("button", name="Show more").click()
    await expect(rows).to_have_count(53)
    await expect(page.get_by_role("button", name="Show more")).to_be_hidden()

    await page.get_by_label("Sentiment").select_option("negative")
    await page.get_by_label("Text").fill("WRONG")
    await page.locator("#feedback-form").get_by_role("button", name="Show", exact=True).click()
    await expect(rows).to_have_count(3)
    await expect(page.locator("#message")).to_have_text("3 feedback shown.")
    await expect(rows.first.locator("td").nth(2)).to_have_text("incorrect")
    await screenshot(page, "admin", "07-feedback")
    await expect(page.get_by_role("button", name="Transcript of conversation neg-1")).to_have_count(0)  # none held
    await page.get_by_role("button", name="Transcript of conversation neg-0").click()
    dialog = page.get_by_role("dialog", name="Transcript of neg-0")
    await expect(dialog).to_contain_text("Q: how do I restart it?")
    await expect(dialog).to_contain_text("A: Run systemctl restart.")
    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_be_hidden()
    async with page.expect_download() as started:
        await page.get_by_role("link", name="CSV").click()
    download = await started.value
    exported = await asyncio.to_thread(Path(await download.path()).read_text)
    assert exported.count("wrong answer") == 3
    assert "fine" not in exported
    await page.get_by_label("Category", exact=True).fill("Not A Word")
    await page.locator("#feedback-form").get_by_role("button", name="Show", exact=True).click()
    await expect(page.locator("#message")).to_contain_text("A category is one word")
    await client.close()
