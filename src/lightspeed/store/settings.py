"""Settings an admin changes at run time: the feedback toggle, telemetry consent and the telemetry
sender's schedule, kept out of the frozen config, in the state store (`store.StateStore`).

`RuntimeSettings` answers from memory; when other processes write the store too
(several workers, or PostgreSQL), `refresh()` reads it again at the start of each
request that needs it, so a change made through one worker is what every worker
answers next: with SQLite only when the store's change stamp moved (`stamp`),
with PostgreSQL (other hosts) every time. A `settings.json` from before is imported on the first start and
renamed `settings.json.migrated`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from lightspeed.store.queries import StateStore
from lightspeed.store.stamp import Watch
from lightspeed_common.atomic import mark_migrated

log = structlog.get_logger(__name__)

LEGACY_FILE = "settings.json"


@dataclass(frozen=True)
class FeedbackStatusChange:
    previous_status: bool
    updated_status: bool
    updated_by: str
    timestamp: datetime


class RuntimeSettings:
    """The feedback toggle: starts from the config, a PUT overrides it and persists."""

    def __init__(
        self,
        store: StateStore,
        data: dict[str, Any],
        feedback_default: bool,
        shared: bool,
        current: Watch | None = None,
    ) -> None:
        """`current`: the watch that looked at the store's change stamp just before `data` was read (without
        one, the first `refresh()` reads again)."""
        self._store = store
        self._data = data
        self._feedback_default = feedback_default
        self._shared = shared
        self._current = current or store.watch()
        self._reading = asyncio.Lock()
        self._lock = asyncio.Lock()

    @classmethod
    async def load(
        cls, store: StateStore, state_dir: Path, feedback_default: bool, shared: bool = False
    ) -> RuntimeSettings:
        """Read the settings from the store, importing a settings.json from before once."""
        legacy = state_dir / LEGACY_FILE
        if legacy.exists():
            data = await asyncio.to_thread(_read_legacy, legacy)
            await store.put_settings(data)
            await asyncio.to_thread(mark_migrated, legacy)
            log.info("settings_migrated", keys=sorted(data), source=str(legacy))
        current = store.watch()
        current.moved()  # before the read: a change committed after it moves the stamp again
        return cls(store, await store.settings(), feedback_default, shared, current)

    async def refresh(self) -> None:
        """Read what other processes may have changed (a no-op when this process is the only writer)."""
        if not self._shared:
            return
        # One read at a time: a request that comes while another's read is under way waits for it; the
        # stamp it would look at has already been marked seen, so it would otherwise answer the old values.
        async with self._reading:
            if self._current.moved():
                try:
                    self._data = await self._store.settings()
                except BaseException:
                    self._current.forget()
                    raise

    @property
    def feedback_enabled(self) -> bool:
        value = self._data.get("feedback_enabled")
        return value if isinstance(value, bool) else self._feedback_default

    async def set_feedback_enabled(self, enabled: bool, by: str, by_hash: str) -> FeedbackStatusChange:
        async with self._lock:
            await self.refresh()
            previous = self.feedback_enabled
            now = datetime.now(UTC)
            await self._write(
                {
                    "feedback_enabled": enabled,
                    "feedback_updated_at": now.isoformat(),
                    "feedback_updated_by": by_hash,
                }
            )
        return FeedbackStatusChange(previous, enabled, by, now)

    def section(self, name: str) -> dict[str, Any]:
        """A copy of the named section (telemetry, telemetry_sender, ...); empty when absent."""
        value = self._data.get(name)
        return dict(value) if isinstance(value, dict) else {}

    async def update_section(self, name: str, values: dict[str, Any] | None) -> None:
        """Replace section `name` (None removes it), in the store first."""
        async with self._lock:
            await self._write({name: values})

    async def _write(self, changes: dict[str, Any]) -> None:
        await self._store.put_settings(changes)
        data = {**self._data, **changes}
        self._data = {k: v for k, v in data.items() if v is not None}


def _read_legacy(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data
