"""Retention on the server's side (issue 26; docs/privacy.md): conversations idle longer than
`conversations.retention_days`, and records still in the storage folders (not yet shipped by the
collector, e.g. while it is off or the ingress is down) older than `user_data_collection.retention_days`,
are deleted by a pass every `conversations.retention_check_interval_seconds` (the first one an interval
after start).

A pass does bounded work (at most MAX_CONVERSATIONS conversations and MAX_FILES records); when it hit a
bound the next one follows at once, so a large backlog drains without one pass holding the store or the
disk for long. With several workers one pass runs at a time (the store's `retention` lease). A pass that
removed something is counted in `lightspeed_retention_removed_total{what}` and writes one audit event
(requested by `retention`). Defaults (both None) keep everything, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from prometheus_client import Counter

from lightspeed.privacy.audit import audit
from lightspeed.store.queries import StateStore
from lightspeed_common.config import AppConfig
from lightspeed_common.records import RECORD_KINDS, is_record_name, prune_folders

log = structlog.get_logger(__name__)

MAX_CONVERSATIONS = 1000  # per pass
MAX_FILES = 10_000  # per pass and storage folder
LEASE = "retention"


@dataclass(frozen=True)
class Expired:
    """What one retention pass removed, per place; `more`: it stopped at a bound, more are due."""

    conversations: int = 0
    turns: int = 0
    transcripts: int = 0
    feedback: int = 0
    more: bool = False

    def counts(self) -> dict[str, int]:
        return {key: value for key, value in asdict(self).items() if key != "more"}


def expire_records(root: Path, before: float, limit: int) -> tuple[int, bool]:
    """Delete record files under `root` last written before `before` (epoch seconds), at most `limit`, and the
    folders that leaves empty (never `root`); (how many, whether it stopped at the limit). Temp files are the
    writer's: never touched here."""
    removed: list[str] = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = f"{folder}/{name}"
            with contextlib.suppress(FileNotFoundError):  # shipped by the collector meanwhile
                if is_record_name(name) and os.lstat(path).st_mtime < before:
                    os.unlink(path)  # noqa: PTH108 - many plain str paths
                    removed.append(os.path.relpath(path, root))
            if len(removed) >= limit:
                prune_folders(root, removed)
                return len(removed), True
    prune_folders(root, removed)
    return len(removed), False


class Retention:
    def __init__(
        self,
        config: AppConfig,
        store: StateStore,
        removed: Counter,
        clock: Callable[[], datetime] | None = None,
        bounds: tuple[int, int] = (MAX_CONVERSATIONS, MAX_FILES),
    ) -> None:
        self._config = config
        self._store = store
        self._removed = removed
        self._clock = clock or (lambda: datetime.now(UTC))
        self._max_conversations, self._max_files = bounds
        self._holder = f"{socket.gethostname()}:{os.getpid()}"  # workers, and API servers on several hosts
        self._task: asyncio.Task[None] | None = None

    @property
    def configured(self) -> bool:
        return bool(self._config.conversations.retention_days or self._config.user_data_collection.retention_days)

    async def sweep(self) -> Expired:
        """One pass, now (by the clock): what it removed."""
        now = self._clock()
        conversations = turns = 0
        if days := self._config.conversations.retention_days:
            conversations, turns = await self._store.expire_idle(now - timedelta(days=days), self._max_conversations)
        files = {kind.name: (0, False) for kind in RECORD_KINDS}
        if days := self._config.user_data_collection.retention_days:
            before = (now - timedelta(days=days)).timestamp()
            for kind in RECORD_KINDS:
                if (root := kind.storage(self._config)) is not None and root.is_dir():
                    files[kind.name] = await asyncio.to_thread(expire_records, root, before, self._max_files)
        expired = Expired(
            conversations,
            turns,
            files["transcript"][0],
            files["feedback"][0],
            more=conversations >= self._max_conversations or any(more for _, more in files.values()),
        )
        if any(expired.counts().values()):
            for what, count in expired.counts().items():
                self._removed.labels(what).inc(count)
            log.info("retention_pass", **expired.counts(), more=expired.more)
            await audit(self._store, "retention", "retention", "retention", expired.counts())
        return expired

    def start(self) -> None:
        if self.configured:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        interval = self._config.conversations.retention_check_interval_seconds
        more = False
        while True:
            # The first pass an interval after start: start-up (loading models) has enough to do.
            await asyncio.sleep(0 if more else interval)
            more = False
            try:
                if await self._store.take_lease(LEASE, self._holder, interval):
                    more = (await self.sweep()).more
            except Exception:
                log.exception("retention_failed", action="tried again at the next pass")
