"""The whole deletion flow: the lightspeed server asks lightspeed-ingest's registry to forget its client id."""

from __future__ import annotations

from typing import Any

from tests.conftest import ClientFactory, ConfigFactory
from tests.fake_llm import free_port
from tests.ingest_support import IngestFactory, admin_get
from tests.lightspeed.test_settings_cli import lightspeed
from tests.registry import Registry, fast_telemetry
from tests.telemetry_support import enable, queue_failed_registration


async def models(ingest: Any) -> list[str]:
    return [m["model_name"] for m in (await admin_get(ingest, "/api/admin/v1/models"))["models"]]


async def test_a_deletion_request_removes_what_this_installation_sent(
    make_client: ClientFactory, make_config: ConfigFactory, make_ingest: IngestFactory
) -> None:
    ingest = await make_ingest()
    client = await make_client(make_config(telemetry=fast_telemetry(str(ingest.make_url("/api/v1/telemetry")))))
    await enable(client)
    await queue_failed_registration(client, "first-model")
    await queue_failed_registration(client, "second-model")
    sent = await (await client.post("/v1/telemetry/send?wait=10")).json()
    assert sent["accepted"] == 2, sent
    assert sorted(await models(ingest)) == ["first-model", "second-model"]

    # Disabled telemetry keeps the id, so the request still works (and sends only the id).
    await client.put("/v1/telemetry", json={"enabled": False})
    resp = await client.post("/v1/telemetry/deletion-request")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["registry"]["deleted"] == {"contributions": 2, "events": 2}
    assert await models(ingest) == []
    log = (await admin_get(ingest, "/api/admin/v1/deletions"))["deletions"]
    assert [entry["via"] for entry in log] == ["client"]


async def test_the_cli_asks_first_and_reports_what_was_deleted(
    make_client: ClientFactory, make_config: ConfigFactory, make_ingest: IngestFactory
) -> None:
    ingest = await make_ingest()
    client = await make_client(make_config(telemetry=fast_telemetry(str(ingest.make_url("/api/v1/telemetry")))))
    await enable(client)
    await queue_failed_registration(client)
    await client.post("/v1/telemetry/send?wait=10")
    url = ["--url", str(client.make_url("")).rstrip("/")]
    declined = await lightspeed("telemetry", "request-deletion", *url, typed="n\n")
    still_there = await models(ingest)
    done = await lightspeed("telemetry", "request-deletion", *url, typed="y\n")
    await client.close()

    assert declined.code == 0
    assert "nothing requested" in declined.out
    assert still_there == ["missing-model"]
    assert done.code == 0, done.err
    assert "/api/v1/telemetry to delete every contribution of client id" in done.out
    assert "the registry deleted 1 contributions (1 events)" in done.out
    assert await models(ingest) == []


async def test_without_a_client_id_or_a_reachable_registry_it_says_why(
    make_client: ClientFactory, make_config: ConfigFactory
) -> None:
    down = f"http://127.0.0.1:{free_port()}/api/v1/telemetry"
    client = await make_client(make_config(telemetry=fast_telemetry(down)))
    never = await client.post("/v1/telemetry/deletion-request")
    assert never.status == 409
    assert "never enabled" in (await never.json())["detail"]["cause"]
    await enable(client)
    unreachable = await client.post("/v1/telemetry/deletion-request")
    assert unreachable.status == 503
    assert "cannot be reached" in (await unreachable.json())["detail"]["response"]


async def test_a_registry_without_the_deletion_endpoint_is_a_502_with_its_answer(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    client = await make_client(make_config(telemetry=fast_telemetry(registry.url)))
    await enable(client)
    resp = await client.post("/v1/telemetry/deletion-request")
    body = await resp.json()
    assert resp.status == 502
    assert body["detail"]["response"] == "The registry refused the deletion request"
    assert "(404)" in body["detail"]["cause"]
