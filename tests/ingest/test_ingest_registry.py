"""lightspeed-ingest's model registry: validation, aggregation, de-duplication, limits, deletion, retention."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ingest.app import enforce_retention
from ingest.context import INGEST
from ingest.storage import contributor_hash
from lightspeed_common.errors import ConfigError
from lightspeed_common.telemetry_schema import utc_timestamp
from tests.ingest_support import (
    ADMIN_KEY,
    Client,
    IngestFactory,
    admin_get,
    admin_headers,
    everything_stored,
    ingest_config,
    records_archive,
    upload,
)
from tests.telemetry_support import CLIENT_ID, ago, event, now

OTHER_CLIENT = "6d1c2a9e-3b7f-4c1a-8e2d-9f0a1b2c3d4e"


async def send(client: Client, events: list[Any], **headers: str) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/api/v1/telemetry", json=events, headers=headers)
    body: dict[str, Any] = await resp.json()
    return resp.status, body


async def models(client: Client) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (await admin_get(client, "/api/admin/v1/models"))["models"]
    return rows


async def test_valid_events_are_counted_per_model_and_installation(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    batch = [
        event(ago(hours=3), "all-MiniLM-L6-v2"),
        event(ago(hours=2), "all-MiniLM-L6-v2"),
        event(ago(hours=1), "all-MiniLM-L6-v2", client_id=OTHER_CLIENT),
        event(ago(hours=1), "BAAI/bge-small-en-v1.5") | {"embedding_dimension": 512, "device_type": "gpu"},
        event(ago(minutes=5), "broken-model") | {"load_success": False, "inference_success": False},
    ]
    status, body = await send(client, batch)
    assert status == 200
    assert (body["accepted"], body["rejected"], body["duplicates"]) == (5, 0, 0)
    assert [r["status"] for r in body["results"]] == ["accepted"] * 5
    rows = {row["model_name"]: row for row in await models(client)}
    minilm = rows["all-MiniLM-L6-v2"]
    assert (minilm["events"], minilm["clients"]) == (3, 2)
    assert minilm | {"events": 0, "clients": 0, "first_day": "", "last_day": ""} == {
        "model_name": "all-MiniLM-L6-v2",
        "model_source": "sentence-transformers",
        "embedding_dimension": 384,
        "distance_metric": "cosine",
        "normalization": "l2",
        "modalities": ["text"],
        "device_type": "cpu",
        "events": 0,
        "clients": 0,
        "load_failures": 0,
        "inference_failures": 0,
        "first_day": "",
        "last_day": "",
    }
    assert (rows["BAAI/bge-small-en-v1.5"]["embedding_dimension"], rows["BAAI/bge-small-en-v1.5"]["device_type"]) == (
        512,
        "gpu",
    )
    assert (rows["broken-model"]["load_failures"], rows["broken-model"]["inference_failures"]) == (1, 1)


async def test_each_event_is_validated_on_its_own(make_ingest: IngestFactory) -> None:
    client = await make_ingest(telemetry={"max_event_age_days": 30})
    good = event(ago(minutes=1), "good-model")
    batch: list[Any] = [
        good,
        event(ago(minutes=1)) | {"user_query": "what is my password"},
        event(ago(minutes=1)) | {"embedding_dimension": "384"},
        event(now() + timedelta(hours=2)),
        event(ago(days=31)),
        event(ago(minutes=1), "/home/alice/models/secret"),
        event(ago(minutes=1)) | {"client_id": "not-a-uuid"},
        "a string",
    ]
    status, body = await send(client, batch)
    assert status == 200
    assert (body["accepted"], body["rejected"]) == (1, 7)
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["accepted"] + ["rejected"] * 7
    errors = [" ".join(r["errors"]) for r in body["results"]]
    assert "user_query: Extra inputs are not permitted" in errors[1]
    assert "embedding_dimension" in errors[2]
    assert "in the future" in errors[3]
    assert "older than 30 days" in errors[4]
    assert "never a file path" in errors[5]
    assert "client_id" in errors[6]
    assert "must be a JSON object" in errors[7]
    assert [row["model_name"] for row in await models(client)] == ["good-model"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "Invalid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "Invalid JSON"),  # item 23.5: deeper than the parser goes
        (b'{"event_type": "model_registration"}', 400, "Invalid body"),
        (b"[" + b"1," * 1100 + b"1]", 413, "Too many events"),
        (b'["' + b"x" * 270_000 + b'"]', 413, "Request Entity Too Large"),
    ],
)
async def test_malformed_and_oversized_bodies_are_refused(
    make_ingest: IngestFactory, body: bytes, status: int, reason: str
) -> None:
    client = await make_ingest(telemetry={"max_body_bytes": 262_144, "max_events_per_request": 1000})
    resp = await client.post("/api/v1/telemetry", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == status
    assert (await resp.json())["detail"]["response"] == reason


async def test_a_resent_batch_is_accepted_but_not_counted_again(make_ingest: IngestFactory) -> None:
    """The client is at-least-once: a reply lost after the commit means the same events come again."""
    client = await make_ingest()
    batch = [event(ago(hours=1), "m-1"), event(ago(hours=2), "m-1")]
    await send(client, batch)
    status, body = await send(client, [*batch, event(ago(minutes=1), "m-1")])
    assert status == 200
    assert (body["accepted"], body["duplicates"]) == (3, 2)
    assert [r["status"] for r in body["results"]] == ["duplicate", "duplicate", "accepted"]
    [row] = await models(client)
    assert (row["events"], row["clients"]) == (3, 1)


async def test_requests_per_address_are_limited_with_retry_after(make_ingest: IngestFactory) -> None:
    client = await make_ingest(
        telemetry={"rate_limit": {"per_address_burst_requests": 3, "per_address_requests_per_minute": 6}}
    )
    for _ in range(3):
        assert (await send(client, [event(ago(minutes=1), str(uuid.uuid4())[:8])]))[0] == 200
    resp = await client.post("/api/v1/telemetry", json=[event(ago(minutes=1), "late")])
    assert resp.status == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 10
    assert "this address" in (await resp.json())["detail"]["cause"]
    assert "late" not in [row["model_name"] for row in await models(client)]
    text = await (await client.get("/metrics")).text()
    assert 'lightspeed_ingest_rate_limited_total{scope="address"} 1.0' in text


async def test_events_per_client_are_limited_and_other_clients_go_on(make_ingest: IngestFactory) -> None:
    client = await make_ingest(
        telemetry={"rate_limit": {"per_client_burst_events": 5, "per_client_events_per_hour": 60}}
    )
    first = [event(ago(minutes=i + 1), "m") for i in range(4)]
    assert (await send(client, first))[0] == 200
    resp = await client.post("/api/v1/telemetry", json=[event(ago(minutes=10 + i), "m") for i in range(2)])
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) == 60  # one event short, one event a minute
    assert "this client" in (await resp.json())["detail"]["cause"]
    status, body = await send(client, [event(ago(minutes=1), "m", client_id=OTHER_CLIENT)])
    assert (status, body["accepted"]) == (200, 1)
    [row] = await models(client)
    assert (row["events"], row["clients"]) == (5, 2)


async def test_no_address_or_client_id_is_stored(
    make_ingest: IngestFactory, tmp_path: Path, ingest_database: dict[str, Any]
) -> None:
    client = await make_ingest()
    await send(client, [event(ago(minutes=1), "private-check-model")])
    await client.close()  # checkpoints the WAL into the database file
    stored = everything_stored(tmp_path / "ingest", ingest_database)
    assert b"private-check-model" in stored  # the check can see what is there
    assert CLIENT_ID.encode() not in stored
    assert b"127.0.0.1" not in stored
    assert contributor_hash("private-check-model", CLIENT_ID).encode() in stored


async def test_an_admin_deletion_request_removes_one_clients_contributions(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    await send(client, [event(ago(hours=2), "shared"), event(ago(hours=1), "only-mine")])
    await send(client, [event(ago(hours=1), "shared", client_id=OTHER_CLIENT)])
    resp = await client.post("/api/admin/v1/deletions", json={"client_id": CLIENT_ID.upper()}, headers=admin_headers())
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["deleted"] == {"contributions": 2, "events": 2}
    rows = await models(client)
    assert [(row["model_name"], row["events"], row["clients"]) for row in rows] == [("shared", 1, 1)]
    # The deleted client's events, sent again, count again (their re-send keys went too).
    status, body = await send(client, [event(ago(hours=2), "shared")])
    assert (status, body["duplicates"]) == (200, 0)
    log = (await admin_get(client, "/api/admin/v1/deletions"))["deletions"]
    assert [(entry["via"], entry["contributions"]) for entry in log] == [("admin", 2)]
    assert CLIENT_ID not in str(log)


async def test_a_client_can_ask_for_its_own_deletion(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    await send(client, [event(ago(hours=1), "mine")])
    resp = await client.delete(f"/api/v1/telemetry/clients/{CLIENT_ID}")
    assert resp.status == 200
    assert (await resp.json())["deleted"] == {"contributions": 1, "events": 1}
    assert await models(client) == []
    bad = await client.delete("/api/v1/telemetry/clients/not-a-uuid")
    assert bad.status == 400


@pytest.mark.parametrize(
    ("payload", "status"),
    # The last: nested deeper than the parser goes (item 23.5; a 500 before).
    [(b'{"client_id": "nope"}', 400), (b"{}", 400), (b'["x"]', 400), (b"[" * 5_000 + b"]" * 5_000, 400)],
)
async def test_deletion_requests_need_a_client_id(make_ingest: IngestFactory, payload: bytes, status: int) -> None:
    client = await make_ingest()
    resp = await client.post("/api/admin/v1/deletions", data=payload, headers=admin_headers())
    assert resp.status == status
    assert "client_id" in (await resp.json())["detail"]["cause"]


async def test_retention_removes_old_contributions_uploads_and_archives(
    make_ingest: IngestFactory, tmp_path: Path
) -> None:
    client = await make_ingest(telemetry={"retention_days": 10}, archive={"retention_days": 5})
    await send(client, [event(ago(days=3), "old-model"), event(ago(minutes=1), "new-model")])
    assert (await upload(client, records_archive(), "old-batch")).status == 202
    ingest = client.app[INGEST]
    nothing = await enforce_retention(ingest)
    assert nothing == {"uploads": 0, "contributions": 0, "seen_events": 0}
    removed = await enforce_retention(ingest, now() + timedelta(days=8))
    assert removed["contributions"] == 1
    assert removed["uploads"] == 1
    assert [row["model_name"] for row in await models(client)] == ["new-model"]
    assert list((tmp_path / "ingest" / "archives").iterdir()) == []  # the day folders went too
    assert (await admin_get(client, "/api/admin/v1/uploads"))["totals"]["uploads"] == 0
    removed = await enforce_retention(ingest, now() + timedelta(days=30))
    assert removed["contributions"] == 1
    assert await models(client) == []


async def test_the_older_spelling_of_archive_retention_still_counts_and_two_that_disagree_are_refused(
    make_ingest: IngestFactory, tmp_path: Path
) -> None:
    client = await make_ingest(uploads={"retention_days": 5})
    assert (await upload(client, records_archive(), "old-batch")).status == 202
    assert (await enforce_retention(client.app[INGEST], now() + timedelta(days=6)))["uploads"] == 1
    with pytest.raises(ConfigError, match=r"archive.retention_days \(7\) and uploads.retention_days \(5\) disagree"):
        ingest_config(tmp_path, uploads={"retention_days": 5}, archive={"retention_days": 7})
    assert (
        ingest_config(
            tmp_path, uploads={"retention_days": 7}, archive={"retention_days": 7}
        ).ingest.archive_retention_days
        == 7
    )


async def test_telemetry_keys_when_configured_are_required(make_ingest: IngestFactory) -> None:
    client = await make_ingest(telemetry={"api_keys": ["registry-key"]})
    assert (await send(client, [event(ago(minutes=1))]))[0] == 401
    assert (await send(client, [event(ago(minutes=1))], Authorization="Bearer wrong"))[0] == 403
    status, body = await send(client, [event(ago(minutes=1))], Authorization="Bearer registry-key")
    assert (status, body["accepted"]) == (200, 1)


async def test_the_admin_api_needs_the_admin_key(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    assert (await client.get("/api/admin/v1/models")).status == 401
    assert (await client.get("/api/admin/v1/models", headers=admin_headers("wrong"))).status == 403
    cross_site = await client.post(
        "/api/admin/v1/deletions",
        json={"client_id": CLIENT_ID},
        headers={**admin_headers(), "Origin": "https://evil.example"},
    )
    assert cross_site.status == 403
    unconfigured = await make_ingest(Path(str(client.app[INGEST].config.state_dir) + "-2"), admin_key=None)
    resp = await unconfigured.get("/api/admin/v1/models", headers=admin_headers(ADMIN_KEY))
    assert resp.status == 403
    assert "No admin key is configured" in (await resp.json())["detail"]["response"]


async def test_behind_a_trusted_proxy_the_forwarded_address_is_limited(make_ingest: IngestFactory) -> None:
    limits = {"per_address_burst_requests": 2, "per_address_requests_per_minute": 1}
    proxied = await make_ingest(telemetry={"rate_limit": {**limits, "trusted_proxies": ["127.0.0.0/8"]}})

    async def status(client: Client, forwarded: str) -> int:
        resp = await client.post("/api/v1/telemetry", json=[], headers={"X-Forwarded-For": forwarded})
        return resp.status

    # A client cannot dodge its limit by prepending addresses: the last untrusted hop counts.
    assert [await status(proxied, f"198.51.100.{i}, 203.0.113.5") for i in range(3)] == [200, 200, 429]
    assert await status(proxied, "203.0.113.6") == 200  # another client behind the same proxy
    direct = await make_ingest(
        Path(str(proxied.app[INGEST].config.state_dir) + "-direct"), telemetry={"rate_limit": limits}
    )
    # Without trusted proxies the header is ignored: spoofed addresses share the peer's limit.
    assert [await status(direct, f"203.0.113.{i}") for i in range(3)] == [200, 200, 429]


def fresh_clients(count: int, model: str = "all-MiniLM-L6-v2") -> list[dict[str, Any]]:
    return [event(ago(minutes=1), model, client_id=str(uuid.uuid4())) for _ in range(count)]


async def test_anonymous_senders_cannot_fill_the_registry_with_fake_installations(make_ingest: IngestFactory) -> None:
    """New client ids per address are limited (20 in a burst): the 21st new installation gets 429,
    while an installation already counted keeps sending."""
    client = await make_ingest()
    first_batch = fresh_clients(15)
    assert (await send(client, first_batch))[0] == 200
    status, body = await send(client, fresh_clients(10))
    assert status == 429
    assert "new installations from this address" in body["detail"]["cause"]
    assert (await send(client, fresh_clients(5)))[0] == 200
    assert (await send(client, fresh_clients(1)))[0] == 429
    known = first_batch[0] | {"timestamp": utc_timestamp(ago(minutes=2))}
    assert (await send(client, [known]))[0] == 200
    rows = {row["model_name"]: row for row in await models(client)}
    assert rows["all-MiniLM-L6-v2"]["clients"] == 20


async def test_a_model_name_with_a_trailing_newline_is_rejected(make_ingest: IngestFactory) -> None:
    """Names are checked whole: `evil-model\n` is not another spelling of `evil-model`."""
    client = await make_ingest()
    status, body = await send(client, [event(ago(hours=1), "evil-model\n"), event(ago(hours=1), "evil-model")])
    assert status == 200
    assert [r["status"] for r in body["results"]] == ["rejected", "accepted"]
    assert [row["model_name"] for row in await models(client)] == ["evil-model"]


async def test_installations_already_counted_are_not_new(make_ingest: IngestFactory) -> None:
    client = await make_ingest(telemetry={"rate_limit": {"per_address_new_clients_burst": 1}})
    assert (await send(client, [event(ago(hours=2), "m", client_id=CLIENT_ID)]))[0] == 200
    assert (await send(client, [event(ago(hours=1), "m", client_id=CLIENT_ID)]))[0] == 200
    assert (await send(client, [event(ago(hours=1), "m", client_id=OTHER_CLIENT)]))[0] == 429


async def test_senders_with_a_telemetry_key_are_not_limited_in_new_installations(make_ingest: IngestFactory) -> None:
    client = await make_ingest(telemetry={"api_keys": ["shared-telemetry-key"]})
    status, body = await send(client, fresh_clients(40), Authorization="Bearer shared-telemetry-key")
    assert (status, body["accepted"]) == (200, 40)


async def test_stored_events_per_model_and_day_are_capped(make_ingest: IngestFactory) -> None:
    """Past max_events_per_model_per_day, events are answered `capped` and not stored; other models go on."""
    client = await make_ingest(telemetry={"max_events_per_model_per_day": 5})
    moment = now().replace(hour=12, minute=0, second=0, microsecond=0)
    if moment > now():
        moment -= timedelta(days=1)
    batch = [event(moment - timedelta(seconds=i), "capped-model") for i in range(8)]
    batch.append(event(moment, "other-model"))
    status, body = await send(client, batch)
    assert status == 200
    assert [r["status"] for r in body["results"]] == ["accepted"] * 5 + ["capped"] * 3 + ["accepted"]
    assert body["capped"] == 3
    assert "daily limit of this model's events is reached: 5 in all" in body["results"][5]["errors"][0]
    rows = {row["model_name"]: row["events"] for row in await models(client)}
    assert rows == {"capped-model": 5, "other-model": 1}
    again = await send(client, [event(moment - timedelta(seconds=100), "capped-model")])
    assert again[1]["results"][0]["status"] == "capped"


async def test_require_api_key_refuses_to_start_without_a_key(tmp_path: Path, make_ingest: IngestFactory) -> None:
    from ingest.app import create_app
    from lightspeed_common.errors import ConfigError
    from tests.ingest_support import ingest_config

    config = ingest_config(tmp_path / "ingest", telemetry={"require_api_key": True})
    runner = web.AppRunner(create_app(config))
    with pytest.raises(ConfigError, match="no telemetry key is configured"):
        await runner.setup()
    await runner.cleanup()
    keyed = await make_ingest(telemetry={"require_api_key": True, "api_keys": ["k"]})
    assert (await send(keyed, fresh_clients(1)))[0] == 401


def fresh_ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


async def test_one_installation_takes_only_its_share_of_a_models_day(make_ingest: IngestFactory) -> None:
    """Item 23.6: one client id sending a model's whole daily cap gets only its share; another installation
    is still counted that day."""
    client = await make_ingest(
        telemetry={"max_events_per_model_per_day": 100, "max_events_per_client_per_model_per_day": 10}
    )
    moment = now() - timedelta(minutes=5)
    greedy = [event(moment - timedelta(seconds=i), "shared-model") for i in range(100)]
    _, body = await send(client, greedy)
    assert (body["accepted"] - body["capped"], body["capped"]) == (10, 90)
    _, again = await send(client, [event(moment - timedelta(seconds=200 + i), "shared-model") for i in range(5)])
    assert again["capped"] == 5
    _, other = await send(client, [event(moment, "shared-model", client_id=OTHER_CLIENT)])
    assert [r["status"] for r in other["results"]] == ["accepted"]
    rows = {row["model_name"]: row["events"] for row in await models(client)}
    assert rows == {"shared-model": 11}


async def test_one_address_takes_only_its_share_of_a_models_day(make_ingest: IngestFactory) -> None:
    """Item 23.6: many client ids from one address together get the address's share; a re-send of counted
    events uses none of it, and another address is still counted."""
    client = await make_ingest(
        telemetry={
            "max_events_per_address_per_model_per_day": 6,
            "rate_limit": {"trusted_proxies": ["127.0.0.1/32"]},
        }
    )
    moment = now() - timedelta(minutes=5)
    many = [event(moment, "shared-model", client_id=client_id) for client_id in fresh_ids(4)]
    first = await send(client, many, **{"X-Forwarded-For": "198.51.100.1"})
    assert [r["status"] for r in first[1]["results"]] == ["accepted"] * 4
    resent = await send(client, many, **{"X-Forwarded-For": "198.51.100.1"})
    assert resent[1]["duplicates"] == 4
    more = [event(moment, "shared-model", client_id=client_id) for client_id in fresh_ids(4)]
    _, body = await send(client, more, **{"X-Forwarded-For": "198.51.100.1"})
    assert [r["status"] for r in body["results"]] == ["accepted"] * 2 + ["capped"] * 2
    assert "6 per source address" in body["results"][2]["errors"][0]
    _, elsewhere = await send(client, [event(moment, "shared-model")], **{"X-Forwarded-For": "203.0.113.9"})
    assert elsewhere["results"][0]["status"] == "accepted"
    assert {row["model_name"]: row["events"] for row in await models(client)} == {"shared-model": 7}


async def test_one_instant_spelled_five_ways_is_counted_once(make_ingest: IngestFactory) -> None:
    """Item 23.7: `Z`, `+00:00`, `.000Z`, `.000000+00:00` and `-00:00` name one instant: one event, four duplicates."""
    client = await make_ingest()
    base = event(now() - timedelta(minutes=5), "spelled-model")
    stem = base["timestamp"].removesuffix("Z")
    spellings = [f"{stem}Z", f"{stem}+00:00", f"{stem}.000Z", f"{stem}.000000+00:00", f"{stem}-00:00"]
    _, body = await send(client, [base | {"timestamp": spelled} for spelled in spellings])
    assert [r["status"] for r in body["results"]] == ["accepted"] + ["duplicate"] * 4
    assert {row["model_name"]: row["events"] for row in await models(client)} == {"spelled-model": 1}
