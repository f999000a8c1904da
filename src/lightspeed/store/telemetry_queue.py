"""The telemetry queue: validated events waiting to be sent, in the state store, bounded in events,
bytes and age.

Each event is one JSON line in the store's `telemetry_queue` table (the exact
bytes that will be sent). This class keeps a copy in memory: appending checks
the bounds against it and writes in the background (a burst of events is one
transaction, not one each); every worker appends to the same table, and when
other processes write it too (several workers, PostgreSQL) `refresh()` reads it
again before the queue is shown or sent.

Overflow policy: when the queue is full (events or bytes) the *new* event is
refused and counted; queued events are never evicted to make room, so what
you reviewed is what gets sent. Events older than the age bound are dropped
and counted before each send. A `telemetry_queue.jsonl` from before is imported
on the first start (unreadable lines, e.g. torn by a crash, skipped and counted)
and renamed `telemetry_queue.jsonl.migrated`.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from lightspeed.store.queries import StateStore
from lightspeed_common.atomic import mark_migrated, read_lines
from lightspeed_common.telemetry_schema import ModelRegistrationEvent

log = structlog.get_logger(__name__)
LEGACY_FILE = "telemetry_queue.jsonl"


@dataclass(eq=False)
class QueuedEvent:
    event: ModelRegistrationEvent
    line: str  # the exact JSON that is sent
    id: int | None = None  # the store's row, once written

    @property
    def size(self) -> int:
        return len(self.line) + 1


@dataclass(frozen=True)
class QueueBounds:
    max_events: int
    max_bytes: int
    max_age: timedelta


def _encode(event: ModelRegistrationEvent) -> str:
    return json.dumps(event.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=True)


def _parse(line: str) -> ModelRegistrationEvent | None:
    try:
        return ModelRegistrationEvent.model_validate_json(line)
    except ValueError:
        return None


class TelemetryQueue:
    """Bounded, persisted queue of validated events. Use from the event loop only."""

    def __init__(
        self,
        store: StateStore,
        bounds: QueueBounds,
        events: list[QueuedEvent],
        on_drop: Callable[[str, int], None],
        shared: bool = False,
    ) -> None:
        self.store = store
        self.bounds = bounds
        self._set(events)
        self._unwritten: list[QueuedEvent] = []
        self._writer: asyncio.Task[None] | None = None
        self._on_drop = on_drop
        self._shared = shared

    @classmethod
    async def load(
        cls,
        store: StateStore,
        state_dir: Path,
        bounds: QueueBounds,
        on_drop: Callable[[str, int], None],
        shared: bool = False,
    ) -> TelemetryQueue:
        """The queue as stored, after importing a telemetry_queue.jsonl from before once."""
        legacy = state_dir / LEGACY_FILE
        if legacy.exists():
            lines = await asyncio.to_thread(lambda: list(read_lines(legacy)))
            valid = [line for line in lines if _parse(line) is not None]
            if skipped := len(lines) - len(valid):
                log.warning("telemetry_queue_lines_skipped", file=str(legacy), lines=skipped)
                on_drop("unreadable", skipped)
            await store.enqueue(valid)
            await asyncio.to_thread(mark_migrated, legacy)
            log.info("telemetry_queue_migrated", events=len(valid), source=str(legacy))
        queue = cls(store, bounds, [], on_drop, shared)
        await queue._read()
        return queue

    async def _read(self) -> None:
        """The stored events (those this process has not written yet kept after them)."""
        events, unreadable = [], []
        for row_id, line in await self.store.queued():
            event = _parse(line)
            if event is None:
                unreadable.append(row_id)
            else:
                events.append(QueuedEvent(event, line, row_id))
        if unreadable:
            log.warning("telemetry_queue_rows_skipped", rows=len(unreadable))
            self._on_drop("unreadable", len(unreadable))
            await self.store.dequeue(unreadable)
        self._set(events + list(self._unwritten))

    async def refresh(self) -> None:
        """Read the queue again when other processes write it too (a no-op otherwise)."""
        if self._shared:
            await self._read()

    def _set(self, events: list[QueuedEvent]) -> None:
        self._events = events
        self._bytes = sum(e.size for e in events)

    def __len__(self) -> int:
        return len(self._events)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def events(self) -> Sequence[QueuedEvent]:
        return tuple(self._events)

    def append(self, event: ModelRegistrationEvent) -> bool:
        """Queue `event`; False (and counted) when the queue is full. Persisted in the background."""
        queued = QueuedEvent(event, _encode(event))
        if len(self._events) >= self.bounds.max_events or self.size_bytes + queued.size > self.bounds.max_bytes:
            self._on_drop("queue_full", 1)
            log.warning("telemetry_event_dropped", reason="queue_full", queued=len(self._events))
            return False
        self._events.append(queued)
        self._bytes += queued.size
        self._unwritten.append(queued)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        return True

    async def flush(self) -> None:
        """Wait until every appended event is in the store."""
        while self._unwritten or (self._writer is not None and not self._writer.done()):
            if self._writer is None or self._writer.done():
                self._writer = asyncio.create_task(self._write_pending())
            await asyncio.shield(self._writer)

    async def _write_pending(self) -> None:
        while self._unwritten:
            batch = list(self._unwritten)
            try:
                ids = await self.store.enqueue([e.line for e in batch])
            except Exception as exc:
                # The events stay queued in memory and are written by the next append or flush.
                log.error("telemetry_queue_write_failed", error=str(exc))
                return
            for queued, row_id in zip(batch, ids, strict=True):
                queued.id = row_id
            self._unwritten = [e for e in self._unwritten if e.id is None]

    async def remove(self, sent: Iterable[QueuedEvent], reason: str | None = None) -> int:
        """Take events out of the queue (and the store). Returns how many left."""
        await self.flush()
        gone = {id(e) for e in sent}
        leaving = [e for e in self._events if id(e) in gone]
        self._set([e for e in self._events if id(e) not in gone])
        await self.store.dequeue([e.id for e in leaving if e.id is not None])
        if reason is not None and leaving:
            self._on_drop(reason, len(leaving))
        return len(leaving)

    async def drop_expired(self, now: datetime, not_before: datetime | None) -> int:
        """Drop events past the age bound, and events dated before consent; returns how many."""
        oldest = now - self.bounds.max_age
        expired = [e for e in self._events if e.event.created_at() < oldest]
        if expired:
            await self.remove(expired, "expired")
        if not_before is not None:
            early = [e for e in self._events if e.event.created_at() < not_before]
            if early:
                await self.remove(early, "before_consent")
            return len(expired) + len(early)
        return len(expired)

    async def purge(self) -> int:
        """Delete every queued event (this process's and every other's); returns how many were deleted."""
        await self.flush()
        count = await self.store.clear_queue()
        self._set([])
        return count

    def counts(self) -> dict[str, Any]:
        return {"events": len(self._events), "bytes": self.size_bytes, "by_model": dict(self._models())}

    def _models(self) -> Counter[str]:
        return Counter(e.event.model_name for e in self._events)
