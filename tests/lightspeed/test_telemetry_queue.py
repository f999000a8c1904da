"""The telemetry queue in the state store: bounded in events, bytes and age, shared between workers,
on SQLite and on PostgreSQL; a queue file from before is imported with its torn lines skipped."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from lightspeed.store.postgres import PostgresStateStore
from lightspeed.store.queries import StateStore
from lightspeed.store.sqlite import SQLiteStateStore
from lightspeed.store.telemetry_queue import LEGACY_FILE, QueueBounds, TelemetryQueue
from lightspeed_common.config_base import DatabaseConfig
from lightspeed_common.telemetry_schema import ModelRegistrationEvent
from tests.postgres import PASSWORD, PgDatabase
from tests.telemetry_support import ago, event, now

BOUNDS = QueueBounds(max_events=100, max_bytes=1024 * 1024, max_age=timedelta(days=21))
OpenQueue = Callable[..., Awaitable[tuple[TelemetryQueue, Counter[str]]]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], StateStore]]:
    """Stores on one database: each call is another process's view (the same file or PostgreSQL database)."""
    opened: list[StateStore] = []
    database: PgDatabase | None = request.getfixturevalue("pg_database") if request.param == "postgresql" else None

    def open_one() -> StateStore:
        store: StateStore
        if database is None:
            store = SQLiteStateStore(tmp_path / "state.sqlite3", remembered=0)
        else:
            store = PostgresStateStore(DatabaseConfig(url=database.url), PASSWORD)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


@pytest.fixture
def open_queue(open_store: Callable[[], StateStore], tmp_path: Path) -> OpenQueue:
    async def load(bounds: QueueBounds = BOUNDS, shared: bool = True) -> tuple[TelemetryQueue, Counter[str]]:
        drops: Counter[str] = Counter()

        def on_drop(reason: str, count: int) -> None:
            drops[reason] += count

        return await TelemetryQueue.load(open_store(), tmp_path, bounds, on_drop, shared), drops

    return load


def model_event(name: str = "m", **shift: float) -> ModelRegistrationEvent:
    return ModelRegistrationEvent.model_validate(event(ago(**shift) if shift else now(), name))


def names(queue: TelemetryQueue) -> list[str]:
    return [q.event.model_name for q in queue.events()]


async def test_appended_events_are_stored_in_order_and_another_process_sees_them(open_queue: OpenQueue) -> None:
    queue, _ = await open_queue()
    for index in range(5):
        assert queue.append(model_event(f"m{index}"))
    await queue.flush()
    other, _ = await open_queue()
    assert names(other) == [f"m{index}" for index in range(5)]
    assert [q.line for q in other.events()] == [q.line for q in queue.events()]  # the exact bytes to send


async def test_a_full_queue_refuses_the_new_event_and_counts_it(open_queue: OpenQueue) -> None:
    """Overflow policy: drop the newest, never evict what the operator may already have reviewed."""
    queue, drops = await open_queue(QueueBounds(3, 1024 * 1024, timedelta(days=21)))
    accepted = [queue.append(model_event(f"m{i}")) for i in range(5)]
    await queue.flush()
    reloaded, _ = await open_queue()

    assert accepted == [True, True, True, False, False]
    assert names(queue) == ["m0", "m1", "m2"]
    assert drops == {"queue_full": 2}
    assert len(reloaded) == 3


async def test_the_byte_bound_holds_as_well(open_queue: OpenQueue) -> None:
    one = len(json.dumps(event(now()), separators=(",", ":"))) + 1
    queue, drops = await open_queue(QueueBounds(100, one * 2 + one // 2, timedelta(days=21)))
    accepted = [queue.append(model_event("m")) for _ in range(4)]
    await queue.flush()

    assert accepted == [True, True, False, False]
    assert queue.size_bytes <= one * 2 + one // 2
    assert drops["queue_full"] == 2


async def test_events_past_the_age_bound_and_before_consent_are_dropped_and_counted(open_queue: OpenQueue) -> None:
    queue, drops = await open_queue()
    queue.append(model_event("ancient", days=30))
    queue.append(model_event("before-consent", hours=2))
    queue.append(model_event("fresh"))
    await queue.flush()

    dropped = await queue.drop_expired(now(), not_before=ago(hours=1))
    reloaded, _ = await open_queue()

    assert dropped == 2
    assert drops == {"expired": 1, "before_consent": 1}
    assert names(queue) == ["fresh"]
    assert names(reloaded) == ["fresh"]


async def test_a_queue_file_from_before_is_imported_once_torn_and_foreign_lines_skipped(
    open_queue: OpenQueue, tmp_path: Path
) -> None:
    good = json.dumps(event(now(), "kept"), separators=(",", ":"))
    extra_field = json.dumps({**event(now(), "extra"), "collection_name": "customer-data"})
    (tmp_path / LEGACY_FILE).write_text(f"{good}\n{extra_field}\n{good[: len(good) // 2]}")
    queue, drops = await open_queue()
    again, _ = await open_queue()

    assert names(queue) == ["kept"]
    assert drops == {"unreadable": 2}
    assert names(again) == ["kept"]  # imported once
    assert not (tmp_path / LEGACY_FILE).exists()
    assert (tmp_path / (LEGACY_FILE + ".migrated")).exists()


async def test_removal_and_purge_reach_every_process(open_queue: OpenQueue) -> None:
    queue, _ = await open_queue()
    for index in range(3):
        queue.append(model_event(f"m{index}"))
    await queue.flush()
    other, _ = await open_queue()
    await queue.remove([queue.events()[0]])
    await other.refresh()
    assert names(other) == ["m1", "m2"]
    other.append(model_event("from-the-other"))
    await other.flush()
    purged = await queue.purge()  # the other process's event too
    await other.refresh()

    assert purged == 3
    assert len(other) == 0


async def test_events_appended_while_a_removal_runs_are_kept(open_queue: OpenQueue) -> None:
    queue, _ = await open_queue()
    queue.append(model_event("sent"))
    await queue.flush()
    removal = asyncio.create_task(queue.remove(list(queue.events())))
    await asyncio.sleep(0)  # the removal has started
    queue.append(model_event("late"))
    await removal
    await queue.flush()
    reloaded, _ = await open_queue()

    assert names(reloaded) == ["late"]
