"""Helpers for the telemetry tests: a registry fixture, enabling telemetry, seeding state."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from lightspeed.store.sqlite import DATABASE_FILE
from lightspeed_common.telemetry_schema import utc_timestamp

# The spec's model_registration fields, written out here on purpose (not imported):
# if the schema ever grows a field, the privacy tests fail.
SPEC_FIELDS = {
    "event_type",
    "model_name",
    "model_source",
    "model_version",
    "embedding_dimension",
    "modalities",
    "distance_metric",
    "normalization",
    "load_success",
    "inference_success",
    "device_type",
    "local_path_hash",
    "timestamp",
    "client_id",
}
CLIENT_ID = "0f3b8e0c-6a51-4e0e-9c39-5d1f8e7a2b10"
Client = TestClient[web.Request, web.Application]


async def enable(client: Client) -> dict[str, Any]:
    consent = await (await client.get("/v1/telemetry/consent")).json()
    resp = await client.put("/v1/telemetry", json={"enabled": True, "consent_version": consent["version"]})
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def queue_failed_registration(client: Client, name: str = "missing-model") -> dict[str, Any]:
    """Register a model whose path does not exist: no model load, one event (if telemetry is on)."""
    resp = await client.post(
        "/v1/embedding-models",
        json={"model_name": name, "model_source": "local_path", "local_path": f"/nonexistent/{name}"},
    )
    assert resp.status == 422, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def event(moment: datetime, name: str = "seeded-model", client_id: str = CLIENT_ID) -> dict[str, Any]:
    return {
        "event_type": "model_registration",
        "model_name": name,
        "model_source": "sentence-transformers",
        "model_version": None,
        "embedding_dimension": 384,
        "modalities": ["text"],
        "distance_metric": "cosine",
        "normalization": "l2",
        "load_success": True,
        "inference_success": True,
        "device_type": "cpu",
        "local_path_hash": None,
        "timestamp": utc_timestamp(moment),
        "client_id": client_id,
    }


def seed_state(
    state_dir: Path,
    *,
    consented_at: datetime,
    events: list[dict[str, Any]],
    sender: dict[str, Any] | None = None,
) -> None:
    """Telemetry enabled at `consented_at` with `events` already queued, as a previous run left it."""
    from lightspeed_common.telemetry_schema import CONSENT_VERSION

    state_dir.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "telemetry": {
            "enabled": True,
            "consent_version": CONSENT_VERSION,
            "consented_at": consented_at.replace(microsecond=0).isoformat(),
            "client_id": CLIENT_ID,
        }
    }
    if sender is not None:
        settings["telemetry_sender"] = sender
    (state_dir / "settings.json").write_text(json.dumps(settings))
    lines = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
    (state_dir / "telemetry_queue.jsonl").write_text(lines)


def now() -> datetime:
    return datetime.now(UTC)


def ago(**delta: float) -> datetime:
    return now() - timedelta(**delta)


def ago_within_one_day(**delta: float) -> datetime:
    """As ago(), but counted back from a moment at least 6 hours into its UTC day, so events seeded
    up to 6 hours apart fall on one day (contributions are counted per day) whenever the test runs."""
    moment = now()
    start_of_day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    anchor = moment if moment - start_of_day >= timedelta(hours=6) else start_of_day - timedelta(minutes=1)
    return anchor - timedelta(**delta)


def stored_settings(state_dir: Path) -> dict[str, Any]:
    """The runtime settings as the state store holds them (conversations.sqlite3's settings table)."""
    with contextlib.closing(sqlite3.connect(state_dir / DATABASE_FILE)) as db:
        return {name: json.loads(value) for name, value in db.execute("SELECT name, value FROM settings")}


def stored_queue(state_dir: Path) -> list[str]:
    """The telemetry queue's lines as the state store holds them, in order."""
    with contextlib.closing(sqlite3.connect(state_dir / DATABASE_FILE)) as db:
        return [line for (line,) in db.execute("SELECT line FROM telemetry_queue ORDER BY id")]
