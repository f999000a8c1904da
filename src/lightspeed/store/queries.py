"""The server's shared state: conversations, runtime settings, the telemetry queue, and leases.

Everything several workers (or several hosts) must agree on lives here, in one
database: the embedded SQLite file (`conversations.sqlite3` in the state
directory, WAL: any number of worker processes on one host) or PostgreSQL
(`service.database.url`: several hosts). The queries are written once for both
(`lightspeed_common.sql`); every call runs on the store's threads, so the event
loop never waits on the database.

- conversations and their turns (`ConversationStore`, see `conversations`);
- settings: the runtime settings (`settings.RuntimeSettings`), one row per key, JSON;
- telemetry_queue: validated events waiting to be sent, one JSON line each;
- leases: who does a job only one process may do (the telemetry sender), until when.

The schema is in `schema`, the backends in `sqlite` and `postgres`, and opening
the configured one in the package (`lightspeed.store`). Files from before (`conversations.jsonl`, `settings.json`,
`telemetry_queue.jsonl`) are imported once, by the process that opens the store
first (the supervisor, with workers), and renamed `*.migrated`: nothing is lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import structlog

from lightspeed.store.audit import AuditEvent
from lightspeed.store.conversations import Conversation, Turn, topic_of
from lightspeed.store.stamp import ChangeStamp, Watch
from lightspeed_common.atomic import read_lines
from lightspeed_common.sql import DatabaseThreads, SQLDatabase

log = structlog.get_logger(__name__)

REMEMBERED_OWNERS = 100_000  # about 24 MB of ids and owner hashes
P = ParamSpec("P")
T = TypeVar("T")

_CONVERSATION_COLUMNS = (
    "conversation_id, owner, created_at, last_message_at, message_count, topic_summary, last_used_model, "
    "last_used_provider"
)


class StateStore(SQLDatabase):
    """The queries, for both databases; the subclasses open them. Every public method is safe to call
    from the event loop (it runs on the store's threads: `lightspeed_common.sql.DatabaseThreads`)."""

    def __init__(self, threads: int, remembered: int, stamp: ChangeStamp | None = None) -> None:
        self._threads = DatabaseThreads(threads, "state-store")
        # Owners never change, so one looked up or created here is remembered: the owner check on every
        # follow-up and feedback costs a dict lookup, not a trip to the store. The oldest is forgotten past
        # `remembered` (0: nothing is remembered, as when another host may delete a conversation). All are
        # forgotten when the change stamp moves: another process on this host deleted conversations.
        self._owners: dict[str, str] = {}
        self._remembered = remembered
        self._forgotten = 0  # how many times owners were forgotten (see `owner`)
        self._stamp = stamp
        self._owners_current = Watch(stamp)

    def watch(self) -> Watch:
        """A cache of this store's contents asks it whether another process changed them (`stamp`)."""
        return Watch(self._stamp)

    def _changed(self) -> None:
        """After a commit other processes' caches must notice (a setting, conversations removed)."""
        if self._stamp is not None:
            self._stamp.bump()

    def _close(self) -> None:
        raise NotImplementedError

    async def _run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`call` on a store thread; a database that cannot be reached is ServiceUnavailable (503)."""
        return await self._threads.run(call, *args, **kwargs)

    async def check(self) -> None:
        """ServiceUnavailable when the database does not answer a trivial query."""
        await self._run(self._read, "SELECT 1")

    async def close(self) -> None:
        await self._threads.close(self._close)

    # -- conversations ---------------------------------------------------------------------

    async def owner(self, conversation_id: str) -> str | None:
        if self._stamp is not None and self._owners_current.moved():
            self._forget_owners()
        known = self._owners.get(conversation_id)
        if known is None:
            forgotten = self._forgotten
            rows = await self._run(
                self._read, "SELECT owner FROM conversations WHERE conversation_id = ?", (conversation_id,)
            )
            known = str(rows[0]["owner"]) if rows else None
            # Not remembered when conversations were removed while it was read: the row may be gone by now.
            if known is not None and forgotten == self._forgotten:
                self._remember(conversation_id, known)
        return known

    def _forget_owners(self, conversation_ids: Iterable[str] | None = None) -> None:
        """Forget these owners (None: all); a lookup under way when this happens remembers nothing."""
        self._forgotten += 1
        if conversation_ids is None:
            self._owners.clear()
        for conversation_id in conversation_ids or ():
            self._owners.pop(conversation_id, None)

    def _remember(self, conversation_id: str, owner: str) -> None:
        if conversation_id in self._owners or not self._remembered:
            return
        if len(self._owners) >= self._remembered:
            del self._owners[next(iter(self._owners))]
        self._owners[conversation_id] = owner

    async def add_turn(self, conversation_id: str, owner: str, turn: Turn, *, topic: bool = True) -> None:
        """Append a turn, creating the conversation (owned by `owner`) if it is new. `topic`: a conversation
        without a topic summary takes the first line of this turn's question as its own."""
        await self._run(self._add_turn, conversation_id, owner, turn, topic)
        self._remember(conversation_id, owner)

    def _add_turn(self, conversation_id: str, owner: str, turn: Turn, topic: bool) -> None:
        completed = turn.completed_at.isoformat()
        summary = topic_of(turn.question) if topic else None
        with self._transaction() as session:
            session.execute(
                "INSERT INTO conversations (conversation_id, owner, created_at, topic_summary) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (conversation_id) DO NOTHING",
                (conversation_id, owner, turn.started_at.isoformat(), summary),
            )
            # The update locks the conversation's row (PostgreSQL; SQLite's whole file is locked already):
            # two workers adding turns at once number them one after the other.
            seq = session.execute(
                "UPDATE conversations SET last_message_at = ?, message_count = message_count + 1, "
                "last_used_model = ?, last_used_provider = ?, topic_summary = COALESCE(topic_summary, ?) "
                "WHERE conversation_id = ? RETURNING message_count",
                (completed, turn.model, turn.provider, summary, conversation_id),
            ).fetchone()[0]
            session.execute(
                "INSERT INTO turns (conversation_id, seq, question, answer, model, provider, started_at, "
                "completed_at, attachments) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    async def get(self, conversation_id: str) -> Conversation | None:
        rows = await self._run(self._select, "WHERE conversation_id = ?", (conversation_id,))
        return rows[0] if rows else None

    async def list_for(self, owner: str | None) -> list[Conversation]:
        """The owner's conversations (None: everyone's), most recent message first."""
        order = "ORDER BY COALESCE(last_message_at, created_at) DESC"
        if owner is None:
            return await self._run(self._select, order, ())
        return await self._run(self._select, f"WHERE owner = ? {order}", (owner,))

    def _select(self, where: str, args: Sequence[Any]) -> list[Conversation]:
        rows = self._read(f"SELECT {_CONVERSATION_COLUMNS} FROM conversations {where}", args)  # noqa: S608 - fixed
        return [Conversation(**row) for row in rows]

    async def turns(self, conversation_id: str) -> list[Turn]:
        rows = await self._run(
            self._read,
            "SELECT question, answer, model, provider, started_at, completed_at, attachments FROM turns "
            "WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        )
        return [
            Turn(
                r["question"],
                r["answer"],
                r["model"],
                r["provider"],
                datetime.fromisoformat(r["started_at"]),
                datetime.fromisoformat(r["completed_at"]),
                json.loads(r["attachments"]),
            )
            for r in rows
        ]

    async def delete(self, conversation_id: str) -> bool:
        self._forget_owners([conversation_id])
        try:
            return await self._run(self._delete, conversation_id)
        finally:
            self._changed()

    def _delete(self, conversation_id: str) -> bool:
        with self._transaction() as session:
            session.execute("DELETE FROM turns WHERE conversation_id = ?", (conversation_id,))
            removed = session.execute("DELETE FROM conversations WHERE conversation_id = ?", (conversation_id,))
            return removed.rowcount > 0

    async def erase_owner(self, owner: str) -> tuple[int, int]:
        """Delete every conversation of `owner` with its turns, in one transaction: (conversations, turns)."""
        self._forget_owners([c for c, o in self._owners.items() if o == owner])
        try:
            return await self._run(self._erase_owner, owner)
        finally:
            self._changed()

    def _erase_owner(self, owner: str) -> tuple[int, int]:
        with self._transaction() as session:
            turns = session.execute(
                "DELETE FROM turns WHERE conversation_id IN "
                "(SELECT conversation_id FROM conversations WHERE owner = ?)",
                (owner,),
            ).rowcount
            conversations = session.execute("DELETE FROM conversations WHERE owner = ?", (owner,)).rowcount
        self._forget_history()
        return conversations, turns

    async def expire_idle(self, before: datetime, limit: int) -> tuple[int, int]:
        """Delete up to `limit` conversations idle since before `before` (their last turn, or their creation
        when they have none), oldest first, with their turns: (conversations, turns)."""
        try:
            expired, turns = await self._run(self._expire_idle, before.isoformat(), limit)
        finally:
            self._changed()
        self._forget_owners(expired)
        return len(expired), turns

    def _expire_idle(self, before: str, limit: int) -> tuple[list[str], int]:
        idle = "COALESCE(last_message_at, created_at)"
        with self._transaction() as session:
            expired = [
                row[0]
                for row in session.execute(
                    f"SELECT conversation_id FROM conversations WHERE {idle} < ? ORDER BY {idle} LIMIT ?",  # noqa: S608
                    (before, limit),
                ).fetchall()
            ]
            if not expired:
                return [], 0
            among = f"conversation_id IN ({', '.join('?' * len(expired))})"
            turns = session.execute(f"DELETE FROM turns WHERE {among}", expired).rowcount  # noqa: S608
            session.execute(f"DELETE FROM conversations WHERE {among}", expired)  # noqa: S608
        self._forget_history()
        return expired, turns

    def _forget_history(self) -> None:
        """After an erasure: what the backend must do so deleted rows are gone from its files too."""

    async def set_topic(self, conversation_id: str, topic_summary: str) -> bool:
        return (
            await self._run(
                self._write_count,
                "UPDATE conversations SET topic_summary = ? WHERE conversation_id = ?",
                (topic_summary, conversation_id),
            )
            > 0
        )

    def _write_count(self, sql: str, args: Sequence[Any]) -> int:
        with self._transaction() as session:
            return session.execute(sql, args).rowcount

    def import_owners(self, path: Path) -> int:
        """The owners file of old releases, one JSON object a line (blocking); torn lines are skipped."""
        rows = []
        for number, line in enumerate(read_lines(path), 1):
            try:
                entry = json.loads(line)
                rows.append((entry["conversation_id"], entry["user_hash"], entry.get("created") or ""))
            except (ValueError, KeyError, TypeError):
                log.warning("conversation_line_skipped", file=str(path), line=number)
        with self._transaction() as session:
            session.executemany(
                "INSERT INTO conversations (conversation_id, owner, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (conversation_id) DO NOTHING",
                rows,
            )
        return len(rows)

    # -- settings ----------------------------------------------------------------------------

    async def settings(self) -> dict[str, Any]:
        rows = await self._run(self._read, "SELECT name, value FROM settings")
        return {row["name"]: json.loads(row["value"]) for row in rows}

    async def put_settings(self, values: dict[str, Any]) -> None:
        """Set each key to its value (JSON), in one transaction; None removes the key."""
        try:
            await self._run(self._put_settings, values)
        finally:
            self._changed()

    def _put_settings(self, values: dict[str, Any]) -> None:
        with self._transaction() as session:
            for name, value in values.items():
                if value is None:
                    session.execute("DELETE FROM settings WHERE name = ?", (name,))
                else:
                    session.execute(
                        "INSERT INTO settings (name, value) VALUES (?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        (name, json.dumps(value, sort_keys=True)),
                    )

    # -- the audit trail -----------------------------------------------------------------------

    async def add_audit(self, event: AuditEvent) -> None:
        row = (event.at, event.action, event.subject, event.requested_by, json.dumps(event.counts, sort_keys=True))
        await self._run(
            self._write_count,
            "INSERT INTO audit (at, action, subject, requested_by, counts) VALUES (?, ?, ?, ?, ?)",
            row,
        )

    async def audit_events(self, limit: int) -> list[AuditEvent]:
        """The newest `limit` events, newest first."""
        sql = "SELECT at, action, subject, requested_by, counts FROM audit ORDER BY id DESC LIMIT ?"
        rows = await self._run(self._read, sql, (limit,))
        return [AuditEvent(**{**row, "counts": json.loads(row["counts"])}) for row in rows]

    # -- the telemetry queue -------------------------------------------------------------------

    async def queued(self) -> list[tuple[int, str]]:
        rows = await self._run(self._read, "SELECT id, line FROM telemetry_queue ORDER BY id")
        return [(int(row["id"]), str(row["line"])) for row in rows]

    async def enqueue(self, lines: Sequence[str]) -> list[int]:
        """Append lines to the queue, in one transaction; their ids, in order."""
        return await self._run(self._enqueue, list(lines))

    def _enqueue(self, lines: list[str]) -> list[int]:
        with self._transaction() as session:
            insert = "INSERT INTO telemetry_queue (line) VALUES (?) RETURNING id"
            return [int(session.execute(insert, (line,)).fetchone()[0]) for line in lines]

    async def dequeue(self, ids: Sequence[int]) -> int:
        """Remove these events (those already gone, e.g. sent by another worker, are fine); how many."""
        return await self._run(self._dequeue, list(ids))

    def _dequeue(self, ids: list[int]) -> int:
        with self._transaction() as session:
            return sum(session.execute("DELETE FROM telemetry_queue WHERE id = ?", (i,)).rowcount for i in ids)

    async def clear_queue(self) -> int:
        return await self._run(self._write_count, "DELETE FROM telemetry_queue", ())

    # -- leases ------------------------------------------------------------------------------

    async def take_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Hold `name` for `seconds` unless another holder's lease is still running; True when held."""
        return await self._run(self._take_lease, name, holder, seconds)

    def _take_lease(self, name: str, holder: str, seconds: float) -> bool:
        now = time.time()
        with self._transaction() as session:
            session.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET holder = excluded.holder, expires_at = excluded.expires_at "
                "WHERE leases.expires_at < ? OR leases.holder = excluded.holder",
                (name, holder, now + seconds, now),
            )
            row = session.execute("SELECT holder FROM leases WHERE name = ?", (name,)).fetchone()
        return row is not None and row[0] == holder

    async def release_lease(self, name: str, holder: str) -> None:
        await self._run(self._write_count, "DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
