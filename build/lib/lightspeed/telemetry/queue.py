"""The telemetry queue: an append-only JSON-lines file, bounded in events, bytes and age.

Appending never rewrites the file: new lines are written together with one
fdatasync by a background task (so 10,000 events cost a handful of syncs, not
10,000). The file is rewritten, atomically, only when events leave it: after
a send, a purge, or when expired events are dropped.

Overflow policy: when the queue is full (events or bytes) the *new* event is
refused and counted; queued events are never evicted to make room, so what
you reviewed is what gets sent. Events older than the age bound are dropped
and counted, at load and before each send. A torn last line (a crash during
an append) is skipped and logged.
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

from lightspeed_common.atomic import append_lines, read_lines, write_private
from lightspeed_common.telemetry_schema import ModelRegistrationEvent

log = structlog.get_logger(__name__)
QUEUE_FILE = "telemetry_queue.jsonl"


@dataclass(frozen=True)
class QueuedEvent:
    event: ModelRegistrationEvent
    line: str  # the exact JSON line on disk, without the newline

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


class TelemetryQueue:
    """Bounded, persisted queue of validated events. Use from the event loop only."""

    def __init__(self, path: Path, bounds: QueueBounds, events: list[QueuedEvent], on_drop: Callable[[str, int], None]):
        self.path = path
        self.bounds = bounds
        self._events = events
        self._bytes = sum(e.size for e in events)
        self._unwritten: list[str] = []
        self._file_lock = asyncio.Lock()
        self._writer: asyncio.Task[None] | None = None
        self._on_drop = on_drop

    @classmethod
    def load(cls, state_dir: Path, bounds: QueueBounds, on_drop: Callable[[str, int], None]) -> TelemetryQueue:
        """Read the queue file (blocking; run on a thread at start-up). Bad lines are skipped."""
        path = state_dir / QUEUE_FILE
        events: list[QueuedEvent] = []
        for number, line in enumerate(read_lines(path), 1):
            try:
                event = ModelRegistrationEvent.model_validate_json(line)
            except ValueError:
                log.warning("telemetry_queue_line_skipped", file=str(path), line=number)
                on_drop("unreadable", 1)
                continue
            events.append(QueuedEvent(event, line))
        return cls(path, bounds, events, on_drop)

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
        if len(self._events) >= self.bounds.max_events or self._bytes + queued.size > self.bounds.max_bytes:
            self._on_drop("queue_full", 1)
            log.warning("telemetry_event_dropped", reason="queue_full", queued=len(self._events))
            return False
        self._events.append(queued)
        self._bytes += queued.size
        self._unwritten.append(queued.line)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        return True

    async def flush(self) -> None:
        """Wait until every appended event is on disk."""
        while self._unwritten or (self._writer is not None and not self._writer.done()):
            if self._writer is None or self._writer.done():
                self._writer = asyncio.create_task(self._write_pending())
            await asyncio.shield(self._writer)

    async def _write_pending(self) -> None:
        async with self._file_lock:
            if not self._unwritten:
                return
            lines, self._unwritten = self._unwritten, []
            try:
                await asyncio.to_thread(append_lines, self.path, lines)
            except OSError as exc:
                # The events stay queued in memory and are written by the next rewrite.
                log.error("telemetry_queue_write_failed", file=str(self.path), error=exc.strerror)

    async def remove(self, sent: Iterable[QueuedEvent], reason: str | None = None) -> int:
        """Take events out of the queue and rewrite the file without them. Returns how many left."""
        gone = {id(e) for e in sent}
        before = len(self._events)
        self._events = [e for e in self._events if id(e) not in gone]
        removed = before - len(self._events)
        if reason is not None and removed:
            self._on_drop(reason, removed)
        await self._rewrite()
        return removed

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
        """Delete every queued event and the file; returns how many were deleted."""
        count = len(self._events)
        self._events = []
        await self._rewrite()
        return count

    async def _rewrite(self) -> None:
        async with self._file_lock:
            self._unwritten = []  # everything still queued is in the rewrite
            self._bytes = sum(e.size for e in self._events)
            payload = "".join(e.line + "\n" for e in self._events).encode("ascii")
            await asyncio.to_thread(_replace_file, self.path, payload)

    def counts(self) -> dict[str, Any]:
        return {"events": len(self._events), "bytes": self._bytes, "by_model": dict(self._models())}

    def _models(self) -> Counter[str]:
        return Counter(e.event.model_name for e in self._events)


def _replace_file(path: Path, payload: bytes) -> None:
    if not payload:
        path.unlink(missing_ok=True)
        return
    write_private(path, payload)
