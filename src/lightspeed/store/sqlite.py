"""The embedded backend: `conversations.sqlite3` in the state directory, WAL, so any number of worker
processes on one host share it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from lightspeed.store.queries import REMEMBERED_OWNERS, StateStore
from lightspeed.store.schema import AUDIT_COLUMNS, CONVERSATION_TABLES, SHARED_TABLES
from lightspeed.store.stamp import ChangeStamp
from lightspeed_common.sql import Session, dicts
from lightspeed_common.sqlite import forget_history, immediate_transaction, open_database

DATABASE_FILE = "conversations.sqlite3"
# Numbered migrations (lightspeed_common.sqlite): n brings a file from version n-1 to n. Never edit one
# that was released; add the next at the end.
SQLITE_MIGRATIONS: list[list[str]] = [
    [*CONVERSATION_TABLES],  # 1: conversations and their turns
    [  # 2: the runtime settings, the telemetry queue and the leases move from files into the store
        *SHARED_TABLES,
        "CREATE TABLE IF NOT EXISTS telemetry_queue (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL)",
    ],
    [f"CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, {AUDIT_COLUMNS})"],  # 3: the audit trail
]
SCHEMA_VERSION = len(SQLITE_MIGRATIONS)


class SQLiteStateStore(StateStore):
    """The embedded store: one SQLite file, WAL, synchronous=NORMAL (an application crash loses nothing;
    a power cut may lose the last turns, never corrupt the file). Several workers on one host share it, and
    tell each other what they changed through its change stamp (`stamp`)."""

    def __init__(self, path: Path, remembered: int = REMEMBERED_OWNERS) -> None:
        # Private from the start (SQLite gives its -wal and -shm files the database file's mode): it holds the
        # telemetry client id and who owns which conversation.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        super().__init__(threads=1, remembered=remembered, stamp=ChangeStamp(path))
        self.path = path
        self._db = open_database(path, SQLITE_MIGRATIONS, "NORMAL")

    def _transaction(self) -> AbstractContextManager[Session]:
        return immediate_transaction(self._db)

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return dicts(self._db.execute(sql, tuple(args)))

    def _forget_history(self) -> None:
        forget_history(self._db)  # the deleted rows were overwritten (secure_delete); the log goes too

    def _close(self) -> None:
        self._db.close()
        if self._stamp is not None:
            self._stamp.close()
