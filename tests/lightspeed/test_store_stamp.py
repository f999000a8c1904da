"""The change stamp: processes sharing one SQLite store (several workers) see each other's changes, and read
the store again only when something changed."""

from __future__ import annotations

import asyncio
import stat
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lightspeed.store.conversations import Turn
from lightspeed.store.settings import RuntimeSettings
from lightspeed.store.sqlite import SQLiteStateStore


async def owned(store: SQLiteStateStore, owner: str) -> str:
    conversation_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    await store.add_turn(conversation_id, owner, Turn("q", "a", "m", "p", now, now))
    return conversation_id


async def test_an_owner_another_process_deleted_or_erased_is_not_answered_from_memory(tmp_path: Path) -> None:
    """Two stores on one file (two workers): the first remembers owners; conversations the second deletes,
    erases or lets expire are unknown to the first at once, while one nobody touched stays known."""
    path = tmp_path / "state.sqlite3"
    first, second = SQLiteStateStore(path), SQLiteStateStore(path)
    deleted, erased, expired, kept = [await owned(first, owner) for owner in ("alice", "bob", "carol", "dave")]
    assert [await first.owner(c) for c in (deleted, erased, kept)] == ["alice", "bob", "dave"]
    assert await second.delete(deleted)
    assert await first.owner(deleted) is None
    assert await second.erase_owner("bob") == (1, 1)
    assert await first.owner(erased) is None
    assert await first.owner(expired) == "carol"
    # carol's conversation is the oldest idle one: a retention pass through the second removes it alone
    assert await second.expire_idle(datetime.now(UTC), 1) == (1, 1)
    assert await first.owner(expired) is None
    assert await first.owner(kept) == "dave"
    await first.close()
    await second.close()


async def test_settings_are_read_again_only_after_another_process_changed_them(tmp_path: Path) -> None:
    """A worker's settings follow a change made through another, and between changes a refresh costs no
    trip to the store: the reads it makes are counted."""
    path = tmp_path / "state.sqlite3"
    first, second = SQLiteStateStore(path), SQLiteStateStore(path)
    reads = 0
    read_settings = first.settings

    async def counted() -> dict[str, object]:
        nonlocal reads
        reads += 1
        return await read_settings()

    first.settings = counted  # type: ignore[method-assign]
    mine = await RuntimeSettings.load(first, tmp_path, feedback_default=True, shared=True)
    theirs = await RuntimeSettings.load(second, tmp_path, feedback_default=True, shared=True)
    assert reads == 1
    for _ in range(5):
        await mine.refresh()
    assert reads == 1
    assert mine.feedback_enabled
    await theirs.set_feedback_enabled(False, "admin", "admin-hash")
    await mine.refresh()
    assert not mine.feedback_enabled
    assert reads == 2
    await mine.refresh()
    assert reads == 2
    # Requests arriving together after a change (a burst on one worker): each answers the new value, the
    # later ones waiting for the first one's read rather than answering what was in memory before it.
    await theirs.set_feedback_enabled(True, "admin", "admin-hash")

    async def answered() -> bool:
        await mine.refresh()
        return mine.feedback_enabled

    assert await asyncio.gather(*(answered() for _ in range(8))) == [True] * 8
    assert reads == 3
    await first.close()
    await second.close()


async def test_the_stamp_file_is_private_to_the_service(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "state.sqlite3")
    stamp = tmp_path / "state.sqlite3-changes"
    assert stamp.stat().st_size == 8
    assert stat.S_IMODE(stamp.stat().st_mode) == 0o600
    await store.close()


async def test_an_owner_read_while_another_process_deleted_the_conversation_is_not_remembered(
    tmp_path: Path,
) -> None:
    """A lookup that read the owner just before another worker deleted the conversation, and finished
    after this worker noticed the deletion, must not put the owner back in memory: the next lookup
    answers from the store (gone), not from what that late lookup remembered."""
    path = tmp_path / "state.sqlite3"
    first, second = SQLiteStateStore(path), SQLiteStateStore(path)
    conversation = await owned(second, "alice")
    read, go = threading.Event(), threading.Event()
    plain_read = first._read

    def read_then_hold(sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        rows = plain_read(sql, args)
        if not read.is_set():
            read.set()
            go.wait(60)
        return rows

    first._read = read_then_hold  # type: ignore[method-assign]
    early = asyncio.create_task(first.owner(conversation))
    assert await asyncio.to_thread(read.wait, 60)
    assert await second.delete(conversation)
    late = asyncio.create_task(first.owner(conversation))
    await asyncio.sleep(0)  # the late lookup notices the deletion before the early one finishes
    go.set()
    assert await early == "alice"  # read before the deletion: as if it had come a moment earlier
    assert await late is None
    assert await first.owner(conversation) is None
    await first.close()
    await second.close()
