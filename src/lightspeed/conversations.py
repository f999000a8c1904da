"""Conversations with their history: who owns each one, and its turns.

`ConversationStore` is the protocol the handlers use; `SQLiteConversationStore`
is the embedded default: `conversations.sqlite3` in the state directory, WAL
mode, every call on one dedicated thread so the event loop never waits on the
disk. What a turn keeps: the question as the records keep it (redacted), the
answer, the model and provider, when it started and completed, and each
attachment's type, content type and size (never its content).

Deleting a conversation removes its history here; transcripts already
written to `transcripts_storage` stay where the collector expects them.

A `conversations.jsonl` from before (owners only) is imported on the first
start and renamed `conversations.jsonl.migrated`: no conversation is lost.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

import structlog

from lightspeed_common.atomic import fsync_dir, read_lines
from lightspeed_common.errors import StorageError
from lightspeed_common.sqlite import SchemaTooNew, immediate_transaction, open_database

log = structlog.get_logger(__name__)

DATABASE_FILE = "conversations.sqlite3"
LEGACY_FILE = "conversations.jsonl"
TOPIC_CHARS = 100
SCHEMA_VERSION = 1
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS conversations (
        conversation_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_message_at TEXT,
        message_count INTEGER NOT NULL DEFAULT 0,
        topic_summary TEXT,
        last_used_model TEXT,
        last_used_provider TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS conversations_owner ON conversations (owner, last_message_at)",
    """CREATE TABLE IF NOT EXISTS turns (
        conversation_id TEXT NOT NULL REFERENCES conversations (conversation_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        model TEXT NOT NULL,
        provider TEXT NOT NULL,
        started_at TEXT NOT NULL,
        completed_at TEXT NOT NULL,
        attachments TEXT NOT NULL,
        PRIMARY KEY (conversation_id, seq)
    )""",
)


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str
    model: str
    provider: str
    started_at: datetime
    completed_at: datetime
    # {"attachment_type", "content_type", "size"} per attachment: never the content.
    attachments: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    owner: str
    created_at: str
    last_message_at: str | None
    message_count: int
    topic_summary: str | None
    last_used_model: str | None
    last_used_provider: str | None


class ConversationStore(Protocol):
    """What the handlers need; every method is safe to call from the event loop."""

    async def owner(self, conversation_id: str) -> str | None: ...

    async def add_turn(self, conversation_id: str, owner: str, turn: Turn) -> None:
        """Append a turn, creating the conversation (owned by `owner`) if it is new."""

    async def get(self, conversation_id: str) -> Conversation | None: ...

    async def turns(self, conversation_id: str) -> list[Turn]: ...

    async def list_for(self, owner: str) -> list[Conversation]:
        """The owner's conversations, most recent message first."""

    async def delete(self, conversation_id: str) -> bool: ...

    async def set_topic(self, conversation_id: str, topic_summary: str) -> bool: ...

    async def close(self) -> None: ...


def topic_of(question: str) -> str:
    """A new conversation's topic summary: its first question's first line, shortened."""
    line = question.strip().splitlines()[0] if question.strip() else ""
    return line if len(line) <= TOPIC_CHARS else line[: TOPIC_CHARS - 1].rstrip() + "…"


REMEMBERED_OWNERS = 100_000  # about 24 MB of ids and owner hashes
P = ParamSpec("P")
T = TypeVar("T")


class SQLiteConversationStore:
    """The embedded store: one SQLite file, WAL, synchronous=NORMAL (an application crash loses
    nothing; a power cut may lose the last turns, never corrupt the file)."""

    def __init__(self, path: Path, remembered: int = REMEMBERED_OWNERS) -> None:
        self.path = path
        self._db = open_database(path, _SCHEMA, SCHEMA_VERSION, "NORMAL")
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conversations")
        # Owners never change, so one looked up or created here is remembered: the owner check on
        # every follow-up and feedback costs a dict lookup, not a trip to the store's thread. The
        # oldest is forgotten past `remembered` entries, so a long-running server's memory stays bounded.
        self._owners: dict[str, str] = {}
        self._remembered = remembered

    @classmethod
    def open(cls, state_dir: Path) -> SQLiteConversationStore:
        """Open (or create) the store, importing a legacy conversations.jsonl once (blocking).
        StorageError names the file when it cannot be opened or a newer release wrote it."""
        try:
            store = cls(state_dir / DATABASE_FILE)
        except (sqlite3.Error, SchemaTooNew) as exc:
            raise StorageError("state", state_dir, f"{DATABASE_FILE}: {exc}") from None
        legacy = state_dir / LEGACY_FILE
        if legacy.exists():
            imported = store._import_legacy(legacy)
            legacy.rename(legacy.with_name(LEGACY_FILE + ".migrated"))
            fsync_dir(state_dir)
            log.info("conversations_migrated", imported=imported, source=str(legacy))
        return store

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self._db)

    def _import_legacy(self, path: Path) -> int:
        rows = []
        for number, line in enumerate(read_lines(path), 1):
            try:
                entry = json.loads(line)
                rows.append((entry["conversation_id"], entry["user_hash"], entry.get("created") or ""))
            except (ValueError, KeyError, TypeError):
                log.warning("conversation_line_skipped", file=str(path), line=number)
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO conversations (conversation_id, owner, created_at) VALUES (?, ?, ?)", rows
            )
        return len(rows)

    async def _run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, functools.partial(call, *args, **kwargs))

    async def owner(self, conversation_id: str) -> str | None:
        known = self._owners.get(conversation_id)
        if known is None:
            known = await self._run(self._owner, conversation_id)
            if known is not None:
                self._remember(conversation_id, known)
        return known

    def _remember(self, conversation_id: str, owner: str) -> None:
        if conversation_id in self._owners:
            return
        if len(self._owners) >= self._remembered:
            del self._owners[next(iter(self._owners))]
        self._owners[conversation_id] = owner

    def _owner(self, conversation_id: str) -> str | None:
        row = self._db.execute(
            "SELECT owner FROM conversations WHERE conversation_id = ?", (conversation_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    async def add_turn(self, conversation_id: str, owner: str, turn: Turn) -> None:
        await self._run(self._add_turn, conversation_id, owner, turn)
        self._remember(conversation_id, owner)

    def _add_turn(self, conversation_id: str, owner: str, turn: Turn) -> None:
        completed = turn.completed_at.isoformat()
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO conversations (conversation_id, owner, created_at, topic_summary) "
                "VALUES (?, ?, ?, ?)",
                (conversation_id, owner, turn.started_at.isoformat(), topic_of(turn.question)),
            )
            seq = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    seq,
                    turn.question,
                    turn.answer,
                    turn.model,
                    turn.provider,
                    turn.started_at.isoformat(),
                    completed,
                    json.dumps(turn.attachments),
                ),
            )
            db.execute(
                "UPDATE conversations SET last_message_at = ?, message_count = message_count + 1, "
                "last_used_model = ?, last_used_provider = ?, topic_summary = COALESCE(topic_summary, ?) "
                "WHERE conversation_id = ?",
                (completed, turn.model, turn.provider, topic_of(turn.question), conversation_id),
            )

    async def get(self, conversation_id: str) -> Conversation | None:
        rows = await self._run(self._select, "WHERE conversation_id = ?", (conversation_id,))
        return rows[0] if rows else None

    async def list_for(self, owner: str) -> list[Conversation]:
        return await self._run(
            self._select, "WHERE owner = ? ORDER BY COALESCE(last_message_at, created_at) DESC", (owner,)
        )

    def _select(self, where: str, args: Sequence[Any]) -> list[Conversation]:
        columns = "conversation_id, owner, created_at, last_message_at, message_count, topic_summary, " + (
            "last_used_model, last_used_provider"
        )
        sql = f"SELECT {columns} FROM conversations {where}"  # noqa: S608 - fixed clauses, values bound
        rows = self._db.execute(sql, tuple(args)).fetchall()
        return [Conversation(*row) for row in rows]

    async def turns(self, conversation_id: str) -> list[Turn]:
        return await self._run(self._turns, conversation_id)

    def _turns(self, conversation_id: str) -> list[Turn]:
        rows = self._db.execute(
            "SELECT question, answer, model, provider, started_at, completed_at, attachments FROM turns "
            "WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        ).fetchall()
        return [
            Turn(q, a, m, p, datetime.fromisoformat(s), datetime.fromisoformat(c), json.loads(att))
            for q, a, m, p, s, c, att in rows
        ]

    async def delete(self, conversation_id: str) -> bool:
        self._owners.pop(conversation_id, None)
        return await self._run(self._delete, conversation_id)

    def _delete(self, conversation_id: str) -> bool:
        with self._transaction() as db:
            db.execute("DELETE FROM turns WHERE conversation_id = ?", (conversation_id,))
            removed = db.execute("DELETE FROM conversations WHERE conversation_id = ?", (conversation_id,))
            return removed.rowcount > 0

    async def set_topic(self, conversation_id: str, topic_summary: str) -> bool:
        return await self._run(self._set_topic, conversation_id, topic_summary)

    def _set_topic(self, conversation_id: str, topic_summary: str) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE conversations SET topic_summary = ? WHERE conversation_id = ?", (topic_summary, conversation_id)
            )
            return cursor.rowcount > 0

    async def close(self) -> None:
        await self._run(self._db.close)
        self._thread.shutdown(wait=True)
