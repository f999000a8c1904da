"""Bodies that arrive in slow pieces, as on any real network, are read whole by every handler.

Each request goes through `SlowRelay`, which forwards the client's bytes in
small pieces with a pause between them, so the handler starts while most of
the body is still on the way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from tests.common.relay import SlowRelay
from tests.conftest import ClientFactory
from tests.ingest_support import ADMIN_KEY, ARCHIVE_TYPE, TOKEN, IngestFactory, records_archive
from tests.telemetry_support import CLIENT_ID, ago, event

RelayFactory = Callable[..., Awaitable[SlowRelay]]


@pytest.fixture
async def relay_to() -> AsyncIterator[RelayFactory]:
    started: list[SlowRelay] = []

    async def start(port: int, piece_bytes: int = 16 * 1024) -> SlowRelay:
        relay = await SlowRelay(port, piece_bytes=piece_bytes, gap_seconds=0.02).start()
        started.append(relay)
        return relay

    yield start
    for relay in started:
        await relay.close()


async def post(url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, **kwargs) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


async def test_a_thousand_telemetry_events_in_slow_pieces_are_all_accepted(
    make_ingest: IngestFactory, relay_to: RelayFactory
) -> None:
    """1,000 events (about 400 KB) sent in 16 KiB pieces: one 200 with every event accepted, not 400."""
    ingest = await make_ingest()
    relay = await relay_to(ingest.server.port)
    start = ago()  # one moment: each event a second before the next, never two in one second
    events = [event(start - timedelta(seconds=i), "all-MiniLM-L6-v2") for i in range(1000)]
    status, body = await post(f"{relay.url}/api/v1/telemetry", json=events)
    assert status == 200, body
    assert (body["accepted"], body["rejected"], body["duplicates"]) == (1000, 0, 0)
    assert relay.pieces > 10


async def test_an_admin_deletion_in_slow_pieces_is_read_whole(
    make_ingest: IngestFactory, relay_to: RelayFactory
) -> None:
    ingest = await make_ingest()
    relay = await relay_to(ingest.server.port, piece_bytes=8)
    status, body = await post(
        f"{relay.url}/api/admin/v1/deletions",
        json={"client_id": CLIENT_ID},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert status == 200, body
    assert "deleted" in body


async def test_an_upload_in_slow_pieces_is_stored(make_ingest: IngestFactory, relay_to: RelayFactory) -> None:
    ingest = await make_ingest()
    relay = await relay_to(ingest.server.port, piece_bytes=64)
    form = aiohttp.FormData()
    form.add_field("file", records_archive(), filename="batch.tar.gz", content_type=ARCHIVE_TYPE)
    headers = {"Authorization": f"Bearer {TOKEN}", "x-rh-insights-request-id": "slow-batch"}
    status, body = await post(f"{relay.url}/api/ingress/v1/upload", data=form, headers=headers)
    assert status == 202, body
    assert body["upload"]["new_records"] == 2


async def test_server_bodies_in_slow_pieces_are_read_whole(
    make_client: ClientFactory, config: Any, relay_to: RelayFactory
) -> None:
    """A question and a feedback sent a few bytes at a time are answered and stored as sent."""
    client = await make_client(config)
    relay = await relay_to(client.server.port, piece_bytes=7)
    status, answer = await post(f"{relay.url}/v1/query?user_id=alice", json={"query": "How do I start the server?"})
    assert status == 200, answer
    feedback = {
        "conversation_id": answer["conversation_id"],
        "user_question": "How do I start the server?",
        "llm_response": "x" * 300,
        "sentiment": 1,
    }
    status, body = await post(f"{relay.url}/v1/feedback?user_id=alice", json=feedback)
    assert (status, body) == (200, {"response": "feedback received"})
