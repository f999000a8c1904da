"""The telemetry queue: append-only, bounded in events, bytes and age, torn lines skipped."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

from lightspeed.telemetry.queue import QUEUE_FILE, QueueBounds, TelemetryQueue
from lightspeed_common.telemetry_schema import ModelRegistrationEvent
from tests.telemetry_support import ago, event, now

BOUNDS = QueueBounds(max_events=100, max_bytes=1024 * 1024, max_age=timedelta(days=21))


def open_queue(state: Path, bounds: QueueBounds = BOUNDS) -> tuple[TelemetryQueue, Counter[str]]:
    drops: Counter[str] = Counter()

    def on_drop(reason: str, count: int) -> None:
        drops[reason] += count

    return TelemetryQueue.load(state, bounds, on_drop), drops


def model_event(name: str = "m", **shift: float) -> ModelRegistrationEvent:
    return ModelRegistrationEvent.model_validate(event(ago(**shift) if shift else now(), name))


async def test_appends_only_add_lines_and_never_rewrite_the_file(tmp_path: Path) -> None:
    queue, _ = open_queue(tmp_path)
    assert queue.append(model_event("first"))
    await queue.flush()
    path = tmp_path / QUEUE_FILE
    inode, before = path.stat().st_ino, path.read_bytes()
    for index in range(5):
        assert queue.append(model_event(f"more-{index}"))
    await queue.flush()
    after = path.read_bytes()

    assert path.stat().st_ino == inode
    assert after.startswith(before)
    assert len(after.splitlines()) == 6
    assert path.stat().st_mode & 0o777 == 0o600


async def test_a_full_queue_refuses_the_new_event_and_counts_it(tmp_path: Path) -> None:
    """Overflow policy: drop the newest, never evict what the operator may already have reviewed."""
    queue, drops = open_queue(tmp_path, QueueBounds(3, 1024 * 1024, timedelta(days=21)))
    accepted = [queue.append(model_event(f"m{i}")) for i in range(5)]
    await queue.flush()

    assert accepted == [True, True, True, False, False]
    assert [q.event.model_name for q in queue.events()] == ["m0", "m1", "m2"]
    assert drops == {"queue_full": 2}
    assert len((tmp_path / QUEUE_FILE).read_text().splitlines()) == 3


async def test_the_byte_bound_holds_as_well(tmp_path: Path) -> None:
    one = len(json.dumps(event(now()), separators=(",", ":"))) + 1
    queue, drops = open_queue(tmp_path, QueueBounds(100, one * 2 + one // 2, timedelta(days=21)))
    accepted = [queue.append(model_event("m")) for _ in range(4)]
    await queue.flush()

    assert accepted == [True, True, False, False]
    assert queue.size_bytes <= one * 2 + one // 2
    assert (tmp_path / QUEUE_FILE).stat().st_size == queue.size_bytes
    assert drops["queue_full"] == 2


async def test_events_past_the_age_bound_and_before_consent_are_dropped_and_counted(tmp_path: Path) -> None:
    queue, drops = open_queue(tmp_path)
    queue.append(model_event("ancient", days=30))
    queue.append(model_event("before-consent", hours=2))
    queue.append(model_event("fresh"))
    await queue.flush()

    dropped = await queue.drop_expired(now(), not_before=ago(hours=1))
    reloaded, _ = open_queue(tmp_path)

    assert dropped == 2
    assert drops == {"expired": 1, "before_consent": 1}
    assert [q.event.model_name for q in queue.events()] == ["fresh"]
    assert [q.event.model_name for q in reloaded.events()] == ["fresh"]


async def test_a_torn_last_line_and_foreign_lines_are_skipped_on_load(tmp_path: Path) -> None:
    good = json.dumps(event(now(), "kept"), separators=(",", ":"))
    extra_field = json.dumps({**event(now(), "extra"), "collection_name": "customer-data"})
    (tmp_path / QUEUE_FILE).write_text(f"{good}\n{extra_field}\n{good[: len(good) // 2]}")
    queue, drops = open_queue(tmp_path)

    assert [q.event.model_name for q in queue.events()] == ["kept"]
    assert drops == {"unreadable": 2}


async def test_purge_deletes_the_file_and_removal_rewrites_it_atomically(tmp_path: Path) -> None:
    queue, _ = open_queue(tmp_path)
    for index in range(3):
        queue.append(model_event(f"m{index}"))
    await queue.flush()
    first = queue.events()[0]
    await queue.remove([first])
    remaining = (tmp_path / QUEUE_FILE).read_text().splitlines()
    purged = await queue.purge()

    assert [json.loads(line)["model_name"] for line in remaining] == ["m1", "m2"]
    assert purged == 2
    assert not (tmp_path / QUEUE_FILE).exists()
    assert not await asyncio.to_thread(lambda: list(tmp_path.iterdir()))  # no temporary files left behind


async def test_events_appended_while_a_rewrite_runs_are_kept(tmp_path: Path) -> None:
    queue, _ = open_queue(tmp_path)
    queue.append(model_event("sent"))
    await queue.flush()
    removal = asyncio.create_task(queue.remove(list(queue.events())))
    await asyncio.sleep(0)  # the rewrite has started and holds the file lock
    queue.append(model_event("late"))
    await removal
    await queue.flush()
    reloaded, _ = open_queue(tmp_path)

    assert [q.event.model_name for q in reloaded.events()] == ["late"]
