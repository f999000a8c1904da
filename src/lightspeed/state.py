"""Small persisted runtime state in the state directory.

`ConversationStore`: who owns which conversation, so a conversation id from
another user is refused, also after a restart. `RuntimeSettings`: settings an
admin changes at run time (the feedback toggle), kept out of the frozen config.
Both hold their data in memory and do their file I/O on a thread.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from lightspeed.atomic import ensure_dir, write_atomic
from lightspeed.records import utc_now

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
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        for number, line in enumerate(lines, 1):
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
            await asyncio.to_thread(_append_line, self._path, line)
            self._owners[conversation_id] = user_hash


def _append_line(path: Path, line: str) -> None:
    ensure_dir(path.parent)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


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
            payload = json.dumps(data, indent=2).encode("utf-8")
            await asyncio.to_thread(_write_settings, self._path, payload)
            self._data = data
        return FeedbackStatusChange(previous, enabled, by, now)


def _write_settings(path: Path, payload: bytes) -> None:
    ensure_dir(path.parent)
    write_atomic(path, payload, mode=0o600)
