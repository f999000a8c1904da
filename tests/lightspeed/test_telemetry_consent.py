"""Telemetry consent and privacy: off by default, consent to listed fields, DO_NOT_TRACK, the client id."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from lightspeed.store.sqlite import DATABASE_FILE
from lightspeed.telemetry.registry_client import ssl_context
from lightspeed_common.config import AppConfig
from lightspeed_common.errors import ConfigError
from lightspeed_common.telemetry_schema import CONSENT_VERSION
from tests.conftest import ClientFactory, ConfigFactory
from tests.registry import Registry, fast_telemetry
from tests.support import link_model
from tests.telemetry_support import SPEC_FIELDS, enable, queue_failed_registration, stored_queue, stored_settings


@pytest.fixture
def telemetry_config(make_config: ConfigFactory, registry: Registry) -> AppConfig:
    return make_config(telemetry=fast_telemetry(registry.url))


async def test_telemetry_is_off_by_default_and_nothing_is_queued_or_sent(
    make_client: ClientFactory, telemetry_config: AppConfig, registry: Registry
) -> None:
    """A fresh install registers models without queuing, sending or making a client id."""
    client = await make_client(telemetry_config)
    result = await queue_failed_registration(client)
    status = await (await client.get("/v1/telemetry")).json()
    await client.close()

    assert result["telemetry"] == {"queued": False, "reason": "not enabled", "ask": True}
    assert status["enabled"] is False
    assert status["client_id"] is None
    assert status["queue"]["events"] == 0
    state = telemetry_config.service.state_dir
    assert stored_queue(state) == []
    assert "client_id" not in stored_settings(state).get("telemetry", {})
    assert registry.requests == []


async def test_the_consent_document_lists_every_field_and_enabling_needs_its_version(
    make_client: ClientFactory, telemetry_config: AppConfig, registry: Registry
) -> None:
    client = await make_client(telemetry_config)
    consent = await (await client.get("/v1/telemetry/consent")).json()
    missing = await client.put("/v1/telemetry", json={"enabled": True})
    stale = await client.put("/v1/telemetry", json={"enabled": True, "consent_version": "0000000000000000"})
    still_off = await (await client.get("/v1/telemetry")).json()
    enabled = await enable(client)

    assert {field["name"] for field in consent["fields"]} == SPEC_FIELDS
    assert all(field["description"] and field["type"] for field in consent["fields"])
    assert consent["version"] == CONSENT_VERSION
    assert consent["registry_url"] == registry.url
    assert any("path" in item for item in consent["never_sent"])
    assert missing.status == 422
    assert "consent_version is required" in (await missing.json())["detail"][0]["msg"]
    assert stale.status == 409
    assert "GET /v1/telemetry/consent" in (await stale.json())["detail"]["cause"]
    assert still_off["enabled"] is False
    assert enabled["enabled"] is True
    assert uuid.UUID(enabled["client_id"]).version == 4
    assert enabled["consent_version"] == CONSENT_VERSION


async def test_telemetry_cannot_be_enabled_without_a_registry(make_client: ClientFactory, config: AppConfig) -> None:
    client = await make_client(config)
    consent = await (await client.get("/v1/telemetry/consent")).json()
    resp = await client.put("/v1/telemetry", json={"enabled": True, "consent_version": consent["version"]})
    assert resp.status == 409
    assert (await resp.json())["detail"]["cause"] == "telemetry.registry_url is not configured"


@pytest.mark.parametrize(
    ("value", "forced_off"), [("1", True), ("true", True), ("no", True), ("", False), ("0", False)]
)
async def test_do_not_track_forces_telemetry_off_and_every_view_says_why(
    make_client: ClientFactory,
    telemetry_config: AppConfig,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
    forced_off: bool,
) -> None:
    """Consent stored earlier does not count while DO_NOT_TRACK is set to anything but empty or 0."""
    first = await make_client(telemetry_config)
    await enable(first)
    await first.close()

    monkeypatch.setenv("DO_NOT_TRACK", value)
    client = await make_client(telemetry_config)
    status = await (await client.get("/v1/telemetry")).json()
    consent = await (await client.get("/v1/telemetry/consent")).json()
    registered = await queue_failed_registration(client)
    send = await client.post("/v1/telemetry/send?wait=5")
    consent_version = consent["version"]
    again = await client.put("/v1/telemetry", json={"enabled": True, "consent_version": consent_version})
    await client.close()

    assert status["enabled"] is not forced_off
    assert status["do_not_track"] is forced_off
    assert consent["do_not_track"] is forced_off
    assert registered["telemetry"]["queued"] is not forced_off
    assert registered["telemetry"]["ask"] is False  # decided earlier, and never under DO_NOT_TRACK
    if forced_off:
        assert status["disabled_reason"] == "DO_NOT_TRACK is set in the server's environment"
        assert registered["telemetry"]["reason"] == status["disabled_reason"]
        assert send.status == 409
        assert again.status == 409
        assert registry.requests == []
    else:
        assert send.status == 200
        assert again.status == 200
        assert len(registry.events) == 1


async def test_a_registered_model_queues_exactly_the_spec_fields_and_no_path_or_text(
    make_client: ClientFactory, telemetry_config: AppConfig, registry: Registry, tmp_path: Path
) -> None:
    """Only the schema's fields leave the machine: the path is hashed, queries never appear."""
    model_dir = tmp_path / "customer-acme-secret" / "models" / "minilm"
    link_model(model_dir)
    client = await make_client(telemetry_config)
    await enable(client)
    question = "Where is the acme-private-cluster-7 kubeconfig?"
    assert (await client.post("/v1/query", json={"query": question})).status == 200
    resp = await client.post(
        "/v1/embedding-models",
        json={"model_name": "acme/minilm", "model_source": "local_path", "local_path": str(model_dir)},
    )
    assert resp.status == 201, await resp.text()
    queue = await (await client.get("/v1/telemetry/queue")).json()
    queue_file = "\n".join(stored_queue(telemetry_config.service.state_dir)).encode()
    sent = await (await client.post("/v1/telemetry/send?wait=10")).json()
    await client.close()

    [queued] = queue["events"]
    event = queued["event"]
    assert set(event) == SPEC_FIELDS
    assert queued["will_send"] is True
    assert event["local_path_hash"] == hashlib.sha256(str(model_dir).encode()).hexdigest()
    assert event["model_name"] == "acme/minilm"
    assert event["embedding_dimension"] == 384
    assert sent["result"] == "sent"
    [request] = registry.requests
    assert request.events == [event]
    for leaked in ("customer-acme-secret", str(model_dir), "acme-private-cluster", "kubeconfig", str(tmp_path)):
        assert leaked.encode() not in queue_file
        assert leaked.encode() not in request.raw
    assert "installation" not in request.headers.get("User-Agent", "")
    assert request.headers["Content-Type"] == "application/json"


async def test_disabling_sends_nothing_keeps_the_queue_and_purge_deletes_it(
    make_client: ClientFactory, telemetry_config: AppConfig, registry: Registry
) -> None:
    client = await make_client(telemetry_config)
    await enable(client)
    await queue_failed_registration(client)
    disabled = await (await client.put("/v1/telemetry", json={"enabled": False})).json()
    send = await client.post("/v1/telemetry/send?wait=5")
    kept = bool(stored_queue(telemetry_config.service.state_dir))
    purged = await (await client.delete("/v1/telemetry/queue")).json()
    after = await (await client.get("/v1/telemetry/queue")).json()
    await client.close()

    assert disabled["enabled"] is False
    assert disabled["queue"]["events"] == 1
    assert disabled["client_id"] is not None  # kept, unused, so re-enabling counts this install once
    assert send.status == 409
    assert kept
    assert purged == {"purged": 1}
    assert after["events"] == []
    assert stored_queue(telemetry_config.service.state_dir) == []
    assert registry.requests == []  # no opt-out ping, nothing at all


async def test_the_client_id_survives_disabling_and_changes_only_with_the_reset_argument(
    make_client: ClientFactory, telemetry_config: AppConfig, embedder: Any, aiohttp_client: Any
) -> None:
    from lightspeed.api.app import create_app

    client = await make_client(telemetry_config)
    first = (await enable(client))["client_id"]
    await client.put("/v1/telemetry", json={"enabled": False})
    second = (await enable(client))["client_id"]
    await client.close()
    restarted = await make_client(telemetry_config)
    third = (await (await restarted.get("/v1/telemetry")).json())["client_id"]
    await restarted.close()

    reset = await aiohttp_client(create_app(telemetry_config, embedder=embedder, reset_telemetry_client_id=True))
    fourth = (await (await reset.get("/v1/telemetry")).json())["client_id"]
    await reset.put("/v1/telemetry", json={"enabled": False})
    await reset.close()
    forgotten = await aiohttp_client(create_app(telemetry_config, embedder=embedder, reset_telemetry_client_id=True))
    fifth = (await (await forgotten.get("/v1/telemetry")).json())["client_id"]
    await forgotten.close()

    assert first == second == third
    assert fourth not in (None, first)
    assert fifth is None  # reset while disabled forgets the id; the next enable makes a new one


def test_the_registry_must_be_https_unless_it_is_loopback(make_config: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match="registry_url must use https"):
        make_config(telemetry={"registry_url": "http://registry.example.com/api/v1/telemetry"})
    for url in ("http://127.0.0.1:9/api/v1/telemetry", "http://localhost/api/v1/telemetry", "https://r.example/x"):
        assert str(make_config(telemetry={"registry_url": url}).telemetry.registry_url) == url


def test_registry_certificates_are_always_checked(make_config: ConfigFactory) -> None:
    import ssl

    context = ssl_context(make_config(telemetry={"registry_url": "https://r.example/api/v1/telemetry"}).telemetry)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_the_shutdown_flush_cannot_be_configured_above_two_seconds(make_config: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match="shutdown_flush_seconds"):
        make_config(telemetry={"shutdown_flush_seconds": 5})


async def test_telemetry_settings_live_in_the_state_directory_not_the_config(
    make_client: ClientFactory, telemetry_config: AppConfig
) -> None:
    client = await make_client(telemetry_config)
    await enable(client)
    await client.close()
    stored = stored_settings(telemetry_config.service.state_dir)
    assert stored["telemetry"]["enabled"] is True
    assert stored["telemetry"]["consent_version"] == CONSENT_VERSION
    assert (telemetry_config.service.state_dir / DATABASE_FILE).stat().st_mode & 0o077 == 0


def test_the_privacy_documentation_lists_exactly_the_fields_that_are_sent() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "telemetry.md").read_text()
    section = text.split("## What is sent", 1)[1].split("##", 1)[0]
    documented = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            documented.update(name.strip("` ") for name in line.split("|")[1].split(","))
    assert documented == SPEC_FIELDS
