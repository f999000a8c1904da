"""Small persisted runtime state in the state directory.

`RuntimeSettings`: settings an admin changes at run time (the feedback
toggle, telemetry consent and the telemetry sender's schedule), kept out of
the frozen config; in memory, file I/O on a thread. Conversations are in
`conversations`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from lightspeed.records.formats import utc_now
from lightspeed_common.atomic import write_private

log = structlog.get_logger(__name__)

SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class FeedbackStatusChange:
    previous_status: bool
    updated_status: bool
    updated_by: str
    timestamp: datetime


class RuntimeSettings:
    """The feedback toggle: starts from the config, a PUT overrides it and persists."""

    def __init__(self, path: Path, data: dict[str, Any], feedback_default: bool) -> None:
        self._path = path
        self._data = data
        self._feedback_default = feedback_default
        self._lock = asyncio.Lock()

    @classmethod
    def load(cls, state_dir: Path, feedback_default: bool) -> RuntimeSettings:
        """Read the settings file (blocking; run on a thread at start-up)."""
        path = state_dir / SETTINGS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"{path} does not hold a JSON object")
        return cls(path, data, feedback_default)

    @property
    def feedback_enabled(self) -> bool:
        value = self._data.get("feedback_enabled")
        return value if isinstance(value, bool) else self._feedback_default

    async def set_feedback_enabled(self, enabled: bool, by: str, by_hash: str) -> FeedbackStatusChange:
        async with self._lock:
            previous = self.feedback_enabled
            now = utc_now()
            data = {
                **self._data,
                "feedback_enabled": enabled,
                "feedback_updated_at": now.isoformat(),
                "feedback_updated_by": by_hash,
            }
            await self._write(data)
        return FeedbackStatusChange(previous, enabled, by, now)

    def section(self, name: str) -> dict[str, Any]:
        """A copy of the named section (telemetry, telemetry_sender, ...); empty when absent."""
        value = self._data.get(name)
        return dict(value) if isinstance(value, dict) else {}

    async def update_section(self, name: str, values: dict[str, Any] | None) -> None:
        """Replace section `name` (None removes it); the file is rewritten atomically first."""
        async with self._lock:
            data = {k: v for k, v in self._data.items() if k != name}
            if values is not None:
                data[name] = values
            await self._write(data)

    async def _write(self, data: dict[str, Any]) -> None:
        payload = json.dumps(data, indent=2, sort_keys=True).encode("utf-8")
        await asyncio.to_thread(write_private, self._path, payload)
        self._data = data
