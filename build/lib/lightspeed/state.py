"""Small persisted runtime state in the state directory.

`ConversationStore`: who owns which conversation, so a conversation id from
another user is refused, also after a restart. `RuntimeSettings`: settings an
admin changes at run time (the feedback toggle, telemetry consent and the
telemetry sender's schedule), kept out of the frozen config.
Both hold their data in memory and do their file I/O on a thread.
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
from lightspeed_common.atomic import append_lines, read_lines, write_private

log = structlog.get_logger(__name__)

CONVERSATIONS_FILE = "conversations.jsonl"
SETTINGS_FILE = "settings.json"


class ConversationStore:
    """Conversation id → owner's user hash, appended to a JSON-lines file.

    A torn last line (a crash mid-append) is skipped on load: the conversation
    it named is then unknown, which costs the user a new conversation, nothing more.
    """

    def __init__(self, path: Path, owners: dict[str, str]) -> None:
        self._path = path
        self._owners = owners
        self._lock = asyncio.Lock()

    @classmethod
    def load(cls, state_dir: Path) -> ConversationStore:
        """Read the store (blocking; run on a thread at start-up)."""
        path = state_dir / CONVERSATIONS_FILE
        owners: dict[str, str] = {}
        for number, line in enumerate(read_lines(path), 1):
            try:
                entry = json.loads(line)
                owners[entry["conversation_id"]] = entry["user_hash"]
            except (ValueError, KeyError, TypeError):
                log.warning("conversation_line_skipped", file=str(path), line=number)
        return cls(path, owners)

    def owner(self, conversation_id: str) -> str | None:
        return self._owners.get(conversation_id)

    async def add(self, conversation_id: str, user_hash: str) -> None:
        line = json.dumps(
            {"conversation_id": conversation_id, "user_hash": user_hash, "created": utc_now().isoformat()}
        )
        async with self._lock:
            await asyncio.to_thread(append_lines, self._path, [line])
            self._owners[conversation_id] = user_hash


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
