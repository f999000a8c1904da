"""/settings in a real headless Chromium (Debian's chromium, driven by playwright).

Screenshots of each step are saved under test-artifacts/settings/ (or
$LIGHTSPEED_TEST_ARTIFACTS) for a human to look at after a run.
"""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from lightspeed.models.embedding import default_model_path
from tests.conftest import ClientFactory, ConfigFactory
from tests.ingest_support import IngestFactory, admin_get
from tests.registry import Registry, fast_telemetry
from tests.support import screenshot
from tests.telemetry_support import SPEC_FIELDS, enable


async def shot(page: Page, name: str) -> None:
    await screenshot(page, "settings", name)


async def open_settings(browser: Browser, base: str, **context: Any) -> Page:
    page = await (await browser.new_context(**context)).new_page()
    await page.goto(f"{base}/settings")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page


async def test_telemetry_is_enabled_only_through_the_consent_dialog(
    browser: Browser, make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    client = await make_client(make_config(telemetry=fast_telemetry(registry.url)))
    page = await open_settings(browser, str(client.make_url("")).rstrip("/"))
    toggle = page.get_by_label("Share anonymized model telemetry", exact=True)
    await expect(toggle).not_to_be_checked()
    await expect(page.locator("#client-id")).to_contain_text("none")
    await expect(page.locator("#dnt-notice")).to_be_hidden()
    await shot(page, "01-telemetry-off")

    # Turning it on opens the consent dialog, which lists every field before anything changes.
    await toggle.click()  # the dialog, not the click, turns it on
    dialog = page.get_by_role("dialog", name="Share anonymized model telemetry?")
    await expect(dialog).to_be_visible()
    names = await page.locator("#consent-fields tr td:first-child").all_inner_texts()
    assert set(names) == SPEC_FIELDS
    await expect(page.locator("#consent-registry")).to_have_text(registry.url)
    await shot(page, "02-consent-dialog")
    await page.get_by_role("button", name="Cancel").click()
    await expect(toggle).not_to_be_checked()
    await toggle.click()  # the dialog, not the click, turns it on
    await page.get_by_role("button", name="Enable telemetry").click()
    await expect(page.locator("#telemetry-state")).to_contain_text("Enabled since")
    await expect(toggle).to_be_checked()
    uuid.UUID(await page.locator("#client-id").inner_text())
    await client.close()
    assert registry.requests == []


async def test_registration_queue_send_and_purge_work_in_a_browser(
    browser: Browser, make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    client = await make_client(make_config(telemetry=fast_telemetry(registry.url)))
    await enable(client)
    page = await open_settings(browser, str(client.make_url("")).rstrip("/"))
    toggle = page.get_by_label("Share anonymized model telemetry", exact=True)

    # Registering a model through the form queues one event, shown exactly as it would be sent.
    await page.get_by_label("Model name").fill("sentence-transformers/all-MiniLM-L6-v2")
    await page.get_by_role("button", name="Register").click()
    await expect(page.locator("#message")).to_contain_text("Registered sentence-transformers/all-MiniLM-L6-v2: 384")
    await expect(page.locator("#message")).to_contain_text("A telemetry event was queued")
    rows = page.locator("#queue-rows tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("sentence-transformers/all-MiniLM-L6-v2")
    fields = await page.locator("#queue-columns th").evaluate_all("ths => ths.map((th) => th.dataset.field)")
    assert set(fields) == SPEC_FIELDS | {"will_send"}  # every field as sent, each under a header in words
    model_row = page.locator('#models-rows tr[data-model="sentence-transformers/all-MiniLM-L6-v2"]')
    await expect(model_row).to_contain_text("384")
    await expect(model_row).to_contain_text("l2")
    await shot(page, "03-model-and-queue")

    await page.get_by_role("button", name="Send now").click()
    await expect(page.locator("#message")).to_contain_text("Sent 1 event: 1 accepted, 0 rejected, 0 left")
    await expect(rows).to_have_count(0)
    assert [e["model_name"] for e in registry.events] == ["sentence-transformers/all-MiniLM-L6-v2"]
    await shot(page, "04-sent")

    # A failed registration is listed with its reason and queues an event too; purge deletes it.
    await page.get_by_label("Source").select_option("local_path")
    await page.get_by_label("Model name").fill("missing-model")
    await page.get_by_label("Local path").fill("/nonexistent/missing-model")
    await page.get_by_role("button", name="Register").click()
    await expect(page.locator("#message")).to_contain_text("/nonexistent/missing-model does not exist")
    await expect(page.locator('#models-rows tr[data-model="missing-model"]')).to_contain_text("failed")
    await expect(rows).to_have_count(1)
    await page.get_by_role("button", name="Purge queued events").click()
    await page.get_by_role("dialog", name="Purge queued telemetry?").get_by_role("button", name="Purge").click()
    await expect(page.locator("#message")).to_contain_text("Purged 1 queued events")
    await expect(rows).to_have_count(0)

    # Turning it off sends nothing.
    await toggle.uncheck()
    await expect(page.locator("#telemetry-state")).to_contain_text("Disabled: not enabled")
    await shot(page, "05-disabled")
    await client.close()
    assert len(registry.requests) == 1


async def test_models_can_be_activated_and_feedback_toggled_from_the_page(
    browser: Browser, make_client: ClientFactory, make_config: ConfigFactory
) -> None:
    client = await make_client(make_config())
    body = {"model_name": "mini", "model_source": "local_path", "local_path": str(default_model_path())}
    assert (await client.post("/v1/embedding-models", json=body)).status == 201
    page = await open_settings(browser, str(client.make_url("")).rstrip("/"))
    await page.get_by_role("button", name="Activate mini").click()
    await expect(page.locator("#active-model")).to_have_text("mini", timeout=30_000)
    feedback = page.get_by_label("Store user feedback")
    await expect(feedback).to_be_checked()
    await feedback.uncheck()
    await expect(page.locator("#message")).to_have_text("Storing feedback is off.")
    await shot(page, "06-models-feedback")
    status = await (await client.get("/v1/feedback/status")).json()
    await client.close()
    assert status["status"]["enabled"] is False


async def test_do_not_track_is_explained_and_the_switch_is_locked(
    browser: Browser,
    make_client: ClientFactory,
    make_config: ConfigFactory,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    client = await make_client(make_config(telemetry=fast_telemetry(registry.url)))
    page = await open_settings(browser, str(client.make_url("")).rstrip("/"))
    await expect(page.locator("#dnt-notice")).to_be_visible()
    await expect(page.get_by_label("Share anonymized model telemetry", exact=True)).to_be_disabled()
    await expect(page.locator("#telemetry-state")).to_contain_text("DO_NOT_TRACK is set")
    await shot(page, "07-do-not-track")
    await client.close()


async def test_the_page_is_protected_like_the_admin_api(
    browser: Browser, make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("- {key: user-key, user_id: alice, role: user}\n- {key: admin-key, user_id: root, role: admin}\n")
    client = await make_client(make_config(authentication={"module": "api-key", "api_key": {"keys_file": str(keys)}}))
    base = str(client.make_url("")).rstrip("/")

    refused = await client.get("/settings")
    user = await (await browser.new_context(http_credentials={"username": "alice", "password": "user-key"})).new_page()
    forbidden = await user.goto(f"{base}/settings")
    admin = await open_settings(browser, base, http_credentials={"username": "root", "password": "admin-key"})
    await expect(admin.locator("#active-model")).to_have_text("all-MiniLM-L6-v2")
    script = await client.get("/settings/settings.js")
    basic = {"Authorization": "Basic " + base64.b64encode(b"root:admin-key").decode()}
    page = await client.get("/settings", headers=basic)
    await client.close()

    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    assert forbidden is not None
    assert forbidden.status == 403
    assert script.status == 401
    assert page.status == 200
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


async def test_the_first_registration_asks_once_and_a_no_is_remembered(
    browser: Browser, make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    client = await make_client(make_config(telemetry=fast_telemetry(registry.url)))
    page = await open_settings(browser, str(client.make_url("")).rstrip("/"))
    prompt = page.locator("#telemetry-prompt")
    await expect(prompt).to_be_hidden()
    await page.get_by_label("Model name").fill("all-MiniLM-L6-v2")
    await page.get_by_role("button", name="Register").click()
    await expect(prompt).to_be_visible()
    await shot(page, "08-first-registration-prompt")
    await page.get_by_role("button", name="Review what would be sent").click()
    await expect(page.get_by_role("dialog", name="Share anonymized model telemetry?")).to_be_visible()
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.locator("#message")).to_contain_text("Telemetry stays off")
    await page.get_by_role("button", name="Register").click()
    await expect(page.locator("#message")).to_contain_text("Registered all-MiniLM-L6-v2")
    await expect(prompt).to_be_hidden()
    status = await (await client.get("/v1/telemetry")).json()
    await client.close()

    assert status["decided"] is True
    assert status["enabled"] is False
    assert status["client_id"] is None
    assert registry.requests == []


async def test_the_registry_can_be_asked_to_delete_this_installations_data(
    browser: Browser, make_client: ClientFactory, make_config: ConfigFactory, make_ingest: IngestFactory
) -> None:
    ingest = await make_ingest()
    client = await make_client(make_config(telemetry=fast_telemetry(str(ingest.make_url("/api/v1/telemetry")))))
    page = await open_settings(browser, str(client.make_url("")).rstrip("/"))
    ask = page.get_by_role("button", name="Ask the registry to delete this installation's data")
    await expect(ask).to_be_disabled()  # no client id yet: the registry holds nothing from here
    await enable(client)
    assert (
        await client.post(
            "/v1/embedding-models",
            json={"model_name": "gone", "model_source": "local_path", "local_path": "/nonexistent/gone"},
        )
    ).status == 422
    assert (await (await client.post("/v1/telemetry/send?wait=10")).json())["accepted"] == 1
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await ask.click()
    dialog = page.get_by_role("dialog", name="Ask the registry to delete this installation's data?")
    await expect(dialog).to_be_visible()
    status = await (await client.get("/v1/telemetry")).json()
    await expect(page.locator("#deletion-client")).to_have_text(status["client_id"])
    await shot(page, "07-deletion-request")
    await dialog.get_by_role("button", name="Cancel").click()
    assert len((await admin_get(ingest, "/api/admin/v1/models"))["models"]) == 1
    await ask.click()
    await dialog.get_by_role("button", name="Ask for deletion").click()
    await expect(page.locator("#message")).to_have_text("The registry deleted 1 contributions (1 events).")
    assert (await admin_get(ingest, "/api/admin/v1/models"))["models"] == []
    await client.close()


PAGE_WIDTH = "document.documentElement.scrollWidth"


@pytest.mark.parametrize("width", [400, 1280])
async def test_settings_fit_the_screen_and_read_as_words(
    browser: Browser, make_client: ClientFactory, make_config: ConfigFactory, registry: Registry, width: int
) -> None:
    """At 400 px and 1280 px: no sideways scrolling of the page, queue headers in words, timestamps to the
    second, counts with the right plural, no empty table, and the consent dialog opens at its top."""
    client = await make_client(make_config(telemetry=fast_telemetry(registry.url, first_send_delay_seconds=600)))
    await enable(client)
    base = str(client.make_url("")).rstrip("/")
    page = await open_settings(browser, base, viewport={"width": width, "height": 900})
    await expect(page.locator("#queue-table")).to_be_hidden()  # nothing queued: no empty header row
    await expect(page.locator("#queue-summary")).to_have_text("No events queued.")
    resp = await client.post(
        "/v1/embedding-models", json={"model_name": "all-MiniLM-L6-v2", "model_source": "sentence-transformers"}
    )
    assert resp.status == 201
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await expect(page.locator("#queue-summary")).to_have_text(re.compile(r"^1 event queued \(\d+ bytes\)\.$"))
    await expect(page.locator("#queue-table")).to_be_visible()
    headers = await page.locator("#queue-columns th").all_inner_texts()
    assert "Model name" in headers
    assert not [h for h in headers if "_" in h]
    timestamp = await page.locator("#queue-rows td[data-field='timestamp']").inner_text()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", timestamp), timestamp
    assert await page.evaluate(PAGE_WIDTH) <= width
    await shot(page, f"10-queue-{width}px")

    await page.get_by_role("button", name="Send now").click()
    await expect(page.locator("#message")).to_have_text("Sent 1 event: 1 accepted, 0 rejected, 0 left.")
    await expect(page.locator("#queue-table")).to_be_hidden()

    await page.get_by_label("Share anonymized model telemetry", exact=True).click()  # off
    await page.get_by_label("Share anonymized model telemetry", exact=True).click()  # on again: the dialog
    dialog = page.get_by_role("dialog", name="Share anonymized model telemetry?")
    await expect(dialog).to_be_visible()
    assert await dialog.evaluate("d => d.scrollTop") == 0
    await expect(page.locator("#consent-heading")).to_be_in_viewport()
    assert await page.evaluate(PAGE_WIDTH) <= width
    await shot(page, f"11-consent-{width}px")
    await client.close()
