"""The state store's two backends, their schemas, and opening the configured one (see `store`).

SQLite (`conversations.sqlite3` in the state directory, WAL: any number of
worker processes on one host) by default; PostgreSQL (`service.database.url`)
for API servers on several hosts, its schema versioned in `schema_version`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import structlog

from lightspeed.store import REMEMBERED_OWNERS, StateStore
from lightspeed_common.atomic import mark_migrated
from lightspeed_common.config import AppConfig
from lightspeed_common.errors import StorageError
from lightspeed_common.sql import DatabaseError, DatabaseUnavailable, Session, database_password, dicts
from lightspeed_common.sqlite import SchemaTooNew, immediate_transaction, open_database

log = structlog.get_logger(__name__)

DATABASE_FILE = "conversations.sqlite3"
LEGACY_CONVERSATIONS = "conversations.jsonl"
SCHEMA_VERSION = 2  # 2: settings, telemetry_queue, leases
CONVERSATION_TABLES = (
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
SHARED_TABLES = (
    "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # DOUBLE PRECISION: seconds since the epoch need more digits than PostgreSQL's REAL (float4) keeps.
    "CREATE TABLE IF NOT EXISTS leases "
    "(name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)",
)
_SQLITE_SCHEMA = (
    *CONVERSATION_TABLES,
    *SHARED_TABLES,
    "CREATE TABLE IF NOT EXISTS telemetry_queue (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL)",
)


class SQLiteStateStore(StateStore):
    """The embedded store: one SQLite file, WAL, synchronous=NORMAL (an application crash loses nothing;
    a power cut may lose the last turns, never corrupt the file). Several workers on one host share it."""

    def __init__(self, path: Path, remembered: int = REMEMBERED_OWNERS) -> None:
        super().__init__(threads=1, remembered=remembered)
        self.path = path
        # Private from the start (SQLite gives its -wal and -shm files the database file's mode): it holds the
        # telemetry client id and who owns which conversation.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = open_database(path, _SQLITE_SCHEMA, SCHEMA_VERSION, "NORMAL")

    def _transaction(self) -> AbstractContextManager[Session]:
        return immediate_transaction(self._db)

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return dicts(self._db.execute(sql, tuple(args)))

    def _close(self) -> None:
        self._db.close()


def open_store(config: AppConfig) -> StateStore:
    """The configured store, its schema current, legacy owner files imported (blocking).
    StorageError names the file or database that cannot be used."""
    service = config.service
    state_dir = service.state_dir
    if service.database.url is not None:
        try:
            password = database_password(service.database)
        except OSError as exc:
            file = str(service.database.password_file)
            raise StorageError("state database password", file, exc.strerror or "unreadable") from None
        try:
            from lightspeed.store_postgres import PostgresStateStore  # noqa: PLC0415 - psycopg only when configured

            store: StateStore = PostgresStateStore(service.database, password)
        except (DatabaseError, DatabaseUnavailable) as exc:
            unreachable = isinstance(exc, DatabaseUnavailable)
            raise StorageError("state database", str(service.database.url), str(exc), temporary=unreachable) from None
    else:
        try:
            # Another worker may delete a conversation: remember owners only when this process is alone.
            store = SQLiteStateStore(state_dir / DATABASE_FILE, REMEMBERED_OWNERS if service.workers == 1 else 0)
        except (sqlite3.Error, SchemaTooNew) as exc:
            raise StorageError("state", state_dir, f"{DATABASE_FILE}: {exc}") from None
    legacy = state_dir / LEGACY_CONVERSATIONS
    if legacy.exists():
        imported = store.import_owners(legacy)
        mark_migrated(legacy)
        log.info("conversations_migrated", imported=imported, source=str(legacy))
    return store


def shared(config: AppConfig) -> bool:
    """Whether other processes write the store too, so what is cached must be read again per request."""
    return config.service.workers > 1 or config.service.database.url is not None
