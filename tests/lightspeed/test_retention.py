"""Retention on the server's side, with a clock the test sets: idle conversations and records the collector
has not claimed go once past their limits, younger ones stay; each pass is bounded, counted and audited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from lightspeed.api.state import METRICS, SERVER
from lightspeed.identity import UserHasher
from lightspeed.privacy.retention import Expired, Retention
from lightspeed.store.conversations import Turn
from lightspeed_common.config import AppConfig
from tests.conftest import ClientFactory, ConfigFactory
from tests.lightspeed.test_conversations import as_user
from tests.lightspeed.test_erasure import api_key_config, use
from tests.support import until


def aged(paths: list[Path], days: float) -> None:
    when = (datetime.now(UTC) - timedelta(days=days)).timestamp()
    for path in paths:
        os.utime(path, (when, when))


def records(config: AppConfig) -> list[Path]:
    data = config.user_data_collection
    return sorted(p for root in (data.feedback_storage, data.transcripts_storage) if root for p in root.rglob("*.json"))


def counter() -> Counter:
    return Counter("removed", "test", ["what"], registry=CollectorRegistry())


async def test_records_and_conversations_past_their_limits_go_and_younger_ones_stay(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    config = with_retention(api_key_config(make_config, tmp_path), conversations=30, records=7)
    client = await make_client(config)
    server = client.app[SERVER]
    alices = await use(client, "alice", 2)  # two conversations (now), two transcripts and one feedback
    old_records = records(config)
    aged(old_records, days=8)
    bobs = await use(client, "bob", 1)
    young_records = sorted(set(records(config)) - set(old_records))
    temp = old_records[0].with_name(".in-progress.json.tmp")  # the writer's, never retention's
    temp.write_bytes(b"{")
    aged([temp], days=30)
    idle = [str(uuid.uuid4()), str(uuid.uuid4())]
    for days, conversation in zip((31, 45), idle, strict=True):
        moment = datetime.now(UTC) - timedelta(days=days)
        await server.store.add_turn(conversation, "carol", Turn("q", "a", "m", "p", moment, moment))

    today = Retention(config, server.store, client.app[METRICS].retention_removed, lambda: datetime.now(UTC))
    assert await today.sweep() == Expired(conversations=2, turns=2, transcripts=2, feedback=1)
    assert records(config) == young_records
    assert temp.exists()
    transcripts = config.user_data_collection.transcripts_storage
    assert transcripts is not None
    hasher = UserHasher.from_state_dir(config.service.state_dir)
    assert [p.name for p in transcripts.iterdir()] == [hasher("bob")]  # alice's emptied folders went
    assert [await server.store.owner(c) for c in idle] == [None, None]
    assert None not in [await server.store.owner(c) for c in alices + bobs]
    assert await today.sweep() == Expired()  # nothing more is due today
    trail = await (await client.get("/v1/audit", headers=as_user("admin"))).json()
    assert [(e["action"], e["subject"], e["requested_by"], e["counts"]) for e in trail["events"]] == [
        ("retention", "retention", "retention", {"conversations": 2, "turns": 2, "transcripts": 2, "feedback": 1})
    ]
    metrics = await (await client.get("/metrics")).text()
    assert 'lightspeed_retention_removed_total{what="conversations"} 2.0' in metrics
    # A month on, by the clock the pass is given: everything today's users left is due.
    later = Retention(config, server.store, counter(), lambda: datetime.now(UTC) + timedelta(days=31))
    assert await later.sweep() == Expired(conversations=3, turns=3, transcripts=1, feedback=1)
    assert records(config) == []


def with_retention(config: AppConfig, conversations: int, records: int) -> AppConfig:
    return config.model_copy(
        update={
            "conversations": config.conversations.model_copy(update={"retention_days": conversations}),
            "user_data_collection": config.user_data_collection.model_copy(update={"retention_days": records}),
        }
    )


async def test_a_pass_stops_at_its_bound_and_says_more_are_due(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    config = with_retention(api_key_config(make_config, tmp_path), conversations=1, records=1)
    client = await make_client(config)
    store = client.app[SERVER].store
    past = datetime.now(UTC) - timedelta(days=3)
    for _ in range(5):
        await store.add_turn(str(uuid.uuid4()), "owner", Turn("q", "a", "m", "p", past, past))
    await use(client, "alice", 3)
    aged(records(config), days=2)
    bounded = Retention(config, store, counter(), bounds=(2, 2))
    passes = []
    while (expired := await bounded.sweep()).more:
        passes.append(expired)
    passes.append(expired)
    assert [(p.conversations, p.transcripts, p.feedback) for p in passes] == [(2, 2, 1), (2, 1, 0), (1, 0, 0)]
    assert records(config) == []
    transcripts = config.user_data_collection.transcripts_storage
    assert transcripts is not None
    assert list(transcripts.iterdir()) == []  # the folders a bounded pass emptied went too


def test_check_config_shows_what_is_kept_and_for_how_long(tmp_path: Path) -> None:
    config_file = tmp_path / "lightspeed.yaml"
    config_file.write_text(
        json.dumps({"service": {"state_dir": str(tmp_path / "state")}, "conversations": {"retention_days": 30}})
    )
    done = subprocess.run(
        [sys.executable, "-m", "lightspeed", "check-config", "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "retention: conversations are deleted 30 days after their last turn" in done.stdout
    assert "retention: records not yet shipped are kept until shipped (user_data_collection.retention_days)" in (
        done.stdout
    )


async def test_the_running_server_sweeps_on_its_interval(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    config = with_retention(api_key_config(make_config, tmp_path), conversations=30, records=7)
    config = config.model_copy(
        update={"conversations": config.conversations.model_copy(update={"retention_check_interval_seconds": 0.1})}
    )
    client = await make_client(config)
    await use(client, "alice", 1)
    old = records(config)
    aged(old, days=8)

    async def audited() -> bool:
        """The pass deletes, then audits: its event is the last thing it does."""
        trail = await (await client.get("/v1/audit", headers=as_user("admin"))).json()
        return bool(trail["events"])

    await until(audited, "the server's own pass audited")
    assert not any(path.exists() for path in old)
    trail = await (await client.get("/v1/audit", headers=as_user("admin"))).json()
    assert trail["events"][0]["counts"]["feedback"] == 1
