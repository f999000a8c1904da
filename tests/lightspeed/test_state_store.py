"""The server's state store, on SQLite and on a real PostgreSQL server, as several processes use it:
each test opens two stores on one database, as two workers (or two hosts) would."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lightspeed.store.audit import AuditEvent
from lightspeed.store.conversations import Turn
from lightspeed.store.postgres import POSTGRES_MIGRATIONS, PostgresStateStore
from lightspeed.store.queries import StateStore
from lightspeed.store.sqlite import SQLiteStateStore
from lightspeed_common.config_base import DatabaseConfig
from lightspeed_common.sql import DatabaseError
from tests.conftest import ClientFactory, ConfigFactory
from tests.postgres import PASSWORD, PgDatabase
from tests.support import loop_pause_bound, restore_dump, sqlite_schema, until


@pytest.fixture(params=["sqlite", "postgresql"])
async def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[StateStore, StateStore]]:
    database: PgDatabase | None = request.getfixturevalue("pg_database") if request.param == "postgresql" else None

    def open_one() -> StateStore:
        if database is None:
            return SQLiteStateStore(tmp_path / "state.sqlite3", remembered=0)
        return PostgresStateStore(DatabaseConfig(url=database.url), PASSWORD)

    opened = [open_one(), open_one()]
    yield opened[0], opened[1]
    for store in opened:
        await store.close()


def turn(question: str) -> Turn:
    moment = datetime.now(UTC)
    return Turn(question, f"answer to {question}", "model", "provider", moment, moment)


async def test_turns_added_at_once_by_two_workers_are_all_kept_in_order(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    first, second = two_stores
    conversation = str(uuid.uuid4())
    await first.add_turn(conversation, "owner", turn("q0"))
    # Twenty more at once, alternately through each store.
    adding = [(first if n % 2 else second).add_turn(conversation, "owner", turn(f"q{n}")) for n in range(1, 21)]
    await asyncio.gather(*adding)
    turns = await second.turns(conversation)
    assert sorted(t.question for t in turns) == sorted(f"q{n}" for n in range(21))
    assert len(turns) == 21
    found = await first.get(conversation)
    assert found is not None
    assert found.message_count == 21
    assert found.topic_summary == "q0"


async def test_what_one_worker_changes_the_other_answers(two_stores: tuple[StateStore, StateStore]) -> None:
    first, second = two_stores
    conversation = str(uuid.uuid4())
    await first.add_turn(conversation, "alice-hash", turn("How do I start?"))
    assert await second.owner(conversation) == "alice-hash"
    assert [c.conversation_id for c in await second.list_for("alice-hash")] == [conversation]
    assert await second.set_topic(conversation, "Starting") is True
    assert (await first.get(conversation)).topic_summary == "Starting"  # type: ignore[union-attr]
    assert await first.delete(conversation) is True
    assert await second.owner(conversation) is None  # nothing stale is remembered with another writer
    assert await second.delete(conversation) is False

    await first.put_settings({"feedback_enabled": False, "telemetry": {"enabled": True, "client_id": "c"}})
    assert await second.settings() == {"feedback_enabled": False, "telemetry": {"enabled": True, "client_id": "c"}}
    await second.put_settings({"feedback_enabled": None})
    assert await first.settings() == {"telemetry": {"enabled": True, "client_id": "c"}}


async def test_one_holder_of_a_lease_at_a_time(two_stores: tuple[StateStore, StateStore]) -> None:
    first, second = two_stores
    assert await first.take_lease("sender", "worker-1", 60) is True
    assert await second.take_lease("sender", "worker-2", 60) is False
    assert await first.take_lease("sender", "worker-1", 60) is True  # renewed by its holder
    await first.release_lease("sender", "worker-1")
    assert await second.take_lease("sender", "worker-2", 0.001) is True
    await asyncio.sleep(0.01)  # the lease's own time runs out: nothing observable to wait on but the clock
    assert await first.take_lease("sender", "worker-1", 60) is True  # a lapsed lease is taken over


def test_a_postgresql_store_from_a_newer_release_is_refused(pg_database: PgDatabase) -> None:
    store = PostgresStateStore(DatabaseConfig(url=pg_database.url), PASSWORD)
    asyncio.run(store.close())
    newer = len(POSTGRES_MIGRATIONS) + 1
    pg_database.query(f"UPDATE schema_version SET version = {newer} WHERE component = 'lightspeed' RETURNING 1")  # noqa: S608 - a number
    with pytest.raises(DatabaseError, match=f"lightspeed schema version {newer}; this release knows {newer - 1}"):
        PostgresStateStore(DatabaseConfig(url=pg_database.url), PASSWORD)


async def timed_readiness(client: Any) -> tuple[int, dict[str, Any], float]:
    started = time.perf_counter()
    resp = await client.get("/readiness")
    return resp.status, await resp.json(), time.perf_counter() - started


async def test_a_lost_database_is_named_by_readiness_and_answered_503_with_retry_after(
    make_client: ClientFactory, make_config: ConfigFactory, pg_database: PgDatabase
) -> None:
    """Items 23.3 and 23.13: with PostgreSQL stopped, /readiness says 503 unhealthy and why, each answer
    within a second (from the background probe, not the 2 x connect timeout of asking); conversations
    and queries are 503 with Retry-After; once it is back, ready again and the conversation goes on."""
    database = pg_database.section(connect_timeout_seconds=2, health_check_interval_seconds=0.2)
    client = await make_client(make_config(service={"database": database}))
    first = await client.post("/v1/query?user_id=alice", json={"query": "How do I start the server?"})
    conversation = (await first.json())["conversation_id"]
    assert (await timed_readiness(client))[0] == 200
    # Within a second, or more on a loaded machine; asked directly, the database takes 2 x 2 s to fail.
    bound = max(1.0, 2 * await loop_pause_bound(client))
    pg_database.server.stop("immediate")
    try:
        answers: list[tuple[int, dict[str, Any], float]] = []

        async def unready() -> bool:
            answers.append(await timed_readiness(client))
            return answers[-1][0] == 503

        await until(unready, "readiness 503 with the database stopped")
        body = answers[-1][1]
        assert body["overall_status"] == "unhealthy"
        assert body["ready"] is False
        assert "database:" in body["reason"]
        assert "Conversations and settings unavailable" in body["impacts"]
        assert max(seconds for _, _, seconds in answers) < bound
        lost = await client.get(f"/v1/conversations/{conversation}?user_id=alice")
        assert lost.status == 503
        assert lost.headers["Retry-After"] == "5"
        assert (await lost.json())["detail"]["response"] == "Database unavailable"
        query = await client.post("/v1/query?user_id=alice", json={"query": "How do I start the server?"})
        assert query.status == 503
        assert query.headers["Retry-After"] == "5"
    finally:
        pg_database.server.start()

    async def ready() -> bool:
        return (await timed_readiness(client))[0] == 200

    await until(ready, "readiness 200 once the database is back")
    follow_up = {"query": "and then?", "conversation_id": conversation}
    assert (await client.post("/v1/query?user_id=alice", json=follow_up)).status == 200


CONVERSATION = "0b7c8f5e-1111-4d6a-9a43-7d7c2d8b6f01"  # the one in tests/data/state-v*.sql


@pytest.mark.parametrize("dump", ["state-v1.sql", "state-v2.sql"])
async def test_a_sqlite_store_an_earlier_release_wrote_is_upgraded_in_place(tmp_path: Path, dump: str) -> None:
    """Numbered migrations: a file at version 1 gets version 2's tables, a file as the release before
    numbered migrations wrote it (version 2) is left as it is; both end with a fresh file's schema."""
    fresh, old = tmp_path / "fresh.sqlite3", tmp_path / "old.sqlite3"
    await SQLiteStateStore(fresh).close()
    restore_dump(old, dump)
    store = SQLiteStateStore(old, remembered=0)
    try:
        assert sqlite_schema(old) == sqlite_schema(fresh)
        assert await store.owner(CONVERSATION) == "ownerhash"
        assert [t.answer for t in await store.turns(CONVERSATION)] == ["a."]
        assert await store.settings() == ({"feedback_enabled": False} if dump == "state-v2.sql" else {})
        assert [line for _, line in await store.queued()] == (['{"x": 1}'] if dump == "state-v2.sql" else [])
        await store.put_settings({"feedback_enabled": True})  # the upgraded tables take writes
        assert await store.settings() == {"feedback_enabled": True}
    finally:
        await store.close()


async def test_idle_conversations_expire_oldest_first_a_bounded_number_at_a_time(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    first, second = two_stores
    now = datetime.now(UTC)

    def at(days_ago: int) -> Turn:
        moment = now - timedelta(days=days_ago)
        return Turn("q", "a", "model", "provider", moment, moment)

    idle = {days: str(uuid.uuid4()) for days in (40, 35, 31)}
    for days, conversation in idle.items():
        await first.add_turn(conversation, "owner", at(days + 5))
        await first.add_turn(conversation, "owner", at(days))  # the last turn counts, not the first
    active = str(uuid.uuid4())
    await first.add_turn(active, "owner", at(60))
    await first.add_turn(active, "owner", at(1))
    assert await second.owner(idle[40]) == "owner"
    cutoff = now - timedelta(days=30)
    assert await second.expire_idle(cutoff, 2) == (2, 4)  # the two idle longest
    assert await first.owner(idle[40]) is None
    assert await first.owner(idle[35]) is None
    assert await first.owner(idle[31]) == "owner"
    assert await second.expire_idle(cutoff, 2) == (1, 2)
    assert await second.expire_idle(cutoff, 2) == (0, 0)
    assert [c.conversation_id for c in await first.list_for("owner")] == [active]
    assert len(await first.turns(active)) == 2


async def test_an_owners_erasure_takes_every_conversation_of_theirs_and_the_audit_stays(
    two_stores: tuple[StateStore, StateStore],
) -> None:
    first, second = two_stores
    theirs = [str(uuid.uuid4()) for _ in range(3)]
    for n, conversation in enumerate(theirs):
        for question in range(n + 1):
            await first.add_turn(conversation, "erased-hash", turn(f"q{question}"))
    others = str(uuid.uuid4())
    await first.add_turn(others, "kept-hash", turn("mine"))
    await first.add_audit(
        AuditEvent("2026-12-01T10:00:00+00:00", "export", "erased-hash", "erased-hash", {"feedback": 1})
    )
    assert await second.erase_owner("erased-hash") == (3, 6)
    assert [await first.owner(c) for c in theirs] == [None, None, None]  # not remembered by the other worker
    assert await first.list_for("erased-hash") == []
    assert [c.conversation_id for c in await first.list_for("kept-hash")] == [others]
    assert await second.erase_owner("erased-hash") == (0, 0)
    await second.add_audit(
        AuditEvent("2026-12-01T10:00:01+00:00", "erasure", "erased-hash", "admin-hash", {"turns": 6})
    )
    assert [(e.action, e.subject, e.counts) for e in await first.audit_events(10)] == [
        ("erasure", "erased-hash", {"turns": 6}),
        ("export", "erased-hash", {"feedback": 1}),
    ]
    assert len(await first.audit_events(1)) == 1
