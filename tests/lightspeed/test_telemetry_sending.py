"""Sending telemetry: batches, the registry's verdicts, backoff, a persisted schedule, never blocking."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from lightspeed.api.state import SERVER
from lightspeed_common.config import AppConfig
from tests.conftest import ClientFactory, ConfigFactory
from tests.fake_llm import free_port
from tests.registry import Answer, Registry, fast_telemetry
from tests.telemetry_support import ago, event, now, seed_state, stored_queue, stored_settings


def seeded(make_config: ConfigFactory, url: str, events: int, **telemetry: Any) -> AppConfig:
    config = make_config(telemetry=fast_telemetry(url, **telemetry))
    seed_state(
        config.service.state_dir,
        consented_at=ago(hours=1),
        events=[event(now(), f"model-{i}") for i in range(events)],
    )
    return config


async def send(client: Any) -> dict[str, Any]:
    resp = await client.post("/v1/telemetry/send?wait=20")
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_the_queue_goes_out_in_batches_and_leaves_the_queue(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    config = seeded(make_config, registry.url, 7, batch_max_events=3)
    client = await make_client(config)
    outcome = await send(client)
    queue = await (await client.get("/v1/telemetry/queue")).json()
    await client.close()

    assert [len(r.events) for r in registry.requests] == [3, 3, 1]
    assert [e["model_name"] for e in registry.events] == [f"model-{i}" for i in range(7)]
    assert (outcome["result"], outcome["sent"], outcome["accepted"], outcome["remaining"]) == ("sent", 7, 7, 0)
    assert queue["events"] == []
    assert stored_queue(config.service.state_dir) == []


async def test_events_the_registry_rejects_are_counted_and_not_retried(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    verdict = {
        "accepted": 1,
        "rejected": 1,
        "results": [{"index": 0, "status": "accepted"}, {"index": 1, "status": "rejected", "errors": ["too old"]}],
    }
    registry.script = [Answer(200, json.dumps(verdict))]
    client = await make_client(seeded(make_config, registry.url, 2))
    outcome = await send(client)
    second = await send(client)
    metrics = await (await client.get("/metrics")).text()
    await client.close()

    assert (outcome["accepted"], outcome["rejected"], outcome["remaining"]) == (1, 1, 0)
    assert second["result"] == "nothing_to_send"
    assert len(registry.requests) == 1
    assert 'lightspeed_telemetry_events_sent_total{verdict="rejected"} 1.0' in metrics
    assert 'lightspeed_telemetry_events_sent_total{verdict="accepted"} 1.0' in metrics


async def test_a_4xx_drops_that_batch_and_the_rest_still_goes(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    registry.script = [Answer(400, '{"error": "unknown field"}')]
    client = await make_client(seeded(make_config, registry.url, 3, batch_max_events=2))
    outcome = await send(client)
    metrics = await (await client.get("/metrics")).text()
    await client.close()

    assert [len(r.events) for r in registry.requests] == [2, 1]
    assert (outcome["dropped"], outcome["accepted"], outcome["remaining"]) == (2, 1, 0)
    assert 'lightspeed_telemetry_events_dropped_total{reason="rejected_batch"} 2.0' in metrics


@pytest.mark.parametrize("failure", [503, 500, 429, 408])
async def test_retryable_answers_are_retried_and_each_event_is_sent_once(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry, failure: int
) -> None:
    registry.script = [Answer(failure), Answer(failure)]
    client = await make_client(seeded(make_config, registry.url, 2))
    outcome = await send(client)
    await client.close()

    assert len(registry.requests) == 3
    assert registry.requests[0].events == registry.requests[2].events
    assert (outcome["result"], outcome["accepted"], outcome["remaining"]) == ("sent", 2, 0)


async def test_retry_after_is_honoured_within_a_send(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    registry.script = [Answer(429, "{}", {"Retry-After": "1"})]
    client = await make_client(seeded(make_config, registry.url, 1))
    outcome = await send(client)
    await client.close()

    first, second = registry.requests
    assert second.at - first.at >= 0.95
    assert outcome["result"] == "sent"


async def test_a_long_retry_after_defers_and_survives_a_restart(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    """The registry said wait an hour: neither Send now nor a restart contacts it before then."""
    registry.default = Answer(503, "{}", {"Retry-After": "3600"})
    config = seeded(make_config, registry.url, 2)
    client = await make_client(config)
    outcome = await send(client)
    again = await send(client)
    await client.close()
    restarted = await make_client(config)
    await asyncio.wait_for(restarted.app[SERVER].sender.waiting.wait(), 10)  # it looked at the schedule and waits
    status = await (await restarted.get("/v1/telemetry")).json()
    await restarted.close()

    assert len(registry.requests) == 1  # the first attempt only
    assert outcome["result"] == "failed"
    assert outcome["remaining"] == 2
    assert again["result"] == "deferred"
    assert status["sender"]["next_send_at"] >= outcome["retry_at"]
    assert status["queue"]["events"] == 2


async def test_failed_sends_persist_the_next_attempt_so_a_restart_does_not_hammer(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    registry.default = Answer(503)
    config = seeded(make_config, registry.url, 1, failure_backoff_seconds=3600)
    client = await make_client(config)
    outcome = await send(client)
    await client.close()
    stored = stored_settings(config.service.state_dir)["telemetry_sender"]
    attempts = len(registry.requests)
    restarted = await make_client(config)
    await asyncio.wait_for(restarted.app[SERVER].sender.waiting.wait(), 10)  # it looked at the schedule and waits
    await restarted.close()

    assert attempts == 3  # retry.max_attempts
    assert outcome["result"] == "failed"
    assert stored["consecutive_failures"] == 1
    assert stored["next_send_at"] > now().isoformat()
    assert len(registry.requests) == attempts  # nothing at the restart, nor at its stop: it is backing off


async def test_an_unreachable_registry_fails_fast_and_keeps_the_events(
    make_client: ClientFactory, make_config: ConfigFactory
) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/v1/telemetry"
    client = await make_client(seeded(make_config, url, 1))
    started = time.monotonic()
    outcome = await send(client)
    elapsed = time.monotonic() - started
    await client.close()

    assert outcome["result"] == "failed"
    assert "registry unavailable" in outcome["error"]
    assert outcome["remaining"] == 1
    assert elapsed < 5


async def test_a_hanging_registry_blocks_no_request_and_delays_the_stop_at_most_two_seconds(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    registry.default = Answer(200, delay=30)
    client = await make_client(seeded(make_config, registry.url, 1, request_timeout_seconds=60))
    started = time.monotonic()
    resp = await client.post("/v1/telemetry/send")
    answered = time.monotonic() - started
    body = await resp.json()
    alive = await client.get("/liveness")
    query = await client.post("/v1/query", json={"query": "How do I start the server?"})
    stopping = time.monotonic()
    await client.close()
    stop_seconds = time.monotonic() - stopping

    assert resp.status == 202
    assert body["result"] == "sending"
    assert answered < 10  # not the registry's 30 s (generous: a loaded machine)
    assert alive.status == 200
    assert query.status == 200
    assert len(registry.requests) == 1
    assert stop_seconds < 6  # the 2 s the stop waits for the sender, then the app's own cleanup; not 30 s


async def test_a_clean_stop_sends_what_is_queued(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    client = await make_client(seeded(make_config, registry.url, 2))
    await client.close()
    assert [e["model_name"] for e in registry.events] == ["model-0", "model-1"]


async def test_nothing_is_sent_at_start_up_even_when_a_send_is_due(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    """A send overdue since yesterday waits first_send_delay_seconds after start, then goes."""
    config = make_config(telemetry=fast_telemetry(registry.url, first_send_delay_seconds=0.5))
    seed_state(
        config.service.state_dir,
        consented_at=ago(days=3),
        events=[event(ago(hours=5))],
        sender={"next_send_at": ago(days=1).isoformat()},
    )
    client = await make_client(config)
    sender = client.app[SERVER].sender
    await asyncio.wait_for(sender.waiting.wait(), 10)  # the schedule waits out the start-up delay
    during_start = len(registry.requests)
    await asyncio.wait_for(registry.arrived.wait(), 10)
    after_delay = len(registry.requests)
    await asyncio.wait_for(sender.waiting.wait(), 10)  # the send is over and its outcome stored
    status = await (await client.get("/v1/telemetry")).json()
    await client.close()

    assert during_start == 0
    assert after_delay == 1
    assert status["sender"]["last_result"]["result"] == "sent"
    assert status["sender"]["next_send_at"] > now().isoformat()  # the next one is a day away


async def test_events_dated_before_the_current_consent_are_never_sent(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    """Consent given an hour ago covers what came after it, not what a previous consent queued."""
    config = make_config(telemetry=fast_telemetry(registry.url))
    seed_state(
        config.service.state_dir,
        consented_at=ago(hours=1),
        events=[event(ago(hours=2), "earlier-consent"), event(ago(minutes=5), "this-consent")],
    )
    client = await make_client(config)
    queue = await (await client.get("/v1/telemetry/queue")).json()
    outcome = await send(client)
    metrics = await (await client.get("/metrics")).text()
    await client.close()

    assert [(q["event"]["model_name"], q["will_send"]) for q in queue["events"]] == [
        ("earlier-consent", False),
        ("this-consent", True),
    ]
    assert [e["model_name"] for e in registry.events] == ["this-consent"]
    assert outcome["dropped"] == 1
    assert 'lightspeed_telemetry_events_dropped_total{reason="before_consent"} 1.0' in metrics


async def test_a_redirect_is_not_followed_and_the_batch_is_dropped(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    """A redirect could lead from https to plain http or another host: it is a refusal, not a path."""
    registry.script = [Answer(307, "", {"Location": "http://registry.example.com/api/v1/telemetry"})]
    client = await make_client(seeded(make_config, registry.url, 1))
    outcome = await send(client)
    await client.close()

    assert len(registry.requests) == 1
    assert (outcome["dropped"], outcome["remaining"]) == (1, 0)


async def test_consent_withdrawn_during_a_send_stops_the_next_batch(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    """Consent is checked again before every batch: disabling telemetry while the first batch is at the
    registry means no second batch leaves."""
    release = asyncio.Event()
    registry.script = [Answer(hold=release)]
    config = seeded(make_config, registry.url, 7, batch_max_events=3)
    client = await make_client(config)
    sending = asyncio.ensure_future(send(client))
    await asyncio.wait_for(registry.arrived.wait(), 10)
    resp = await client.put("/v1/telemetry", json={"enabled": False})
    assert resp.status == 200, await resp.text()
    release.set()
    outcome = await sending
    await client.close()

    assert [len(r.events) for r in registry.requests] == [3]
    assert outcome["sent"] == 3


async def test_with_several_workers_one_sends_and_another_is_told_so(
    make_client: ClientFactory, make_config: ConfigFactory, registry: Registry
) -> None:
    """Two workers (two apps on one state store): while one holds the sender's lease, the other's send is
    deferred, and what the first sent is not sent again."""
    release = asyncio.Event()
    registry.script = [Answer(hold=release)]
    config = seeded(make_config, registry.url, 3)
    config = config.model_copy(update={"service": config.service.model_copy(update={"workers": 2})})
    first, second = await make_client(config), await make_client(config)
    sending = asyncio.ensure_future(send(first))
    await asyncio.wait_for(registry.arrived.wait(), 10)
    other = await send(second)
    release.set()
    outcome = await sending
    after = await send(second)
    await first.close()
    await second.close()

    assert (other["result"], other["error"]) == ("deferred", "another worker is sending")
    assert (outcome["result"], outcome["sent"]) == ("sent", 3)
    assert after["result"] == "nothing_to_send"  # the other worker sees the queue the first emptied
    assert sum(len(r.events) for r in registry.requests) == 3
