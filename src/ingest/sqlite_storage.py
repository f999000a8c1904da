"""The default storage of lightspeed-ingest: one SQLite file in WAL mode, every commit durable.

See `storage` for what is kept and `sql_storage` for the queries; this module opens the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ingest.sql_storage import SQLStorage
from ingest.storage import StorageFailure
from lightspeed_common.sql import Session, dicts
from lightspeed_common.sqlite import SchemaTooNew, forget_history, immediate_transaction, open_database

_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS uploads (
    request_id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    service TEXT NOT NULL,
    category TEXT NOT NULL,
    archive TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    records INTEGER NOT NULL,
    new_records INTEGER NOT NULL,
    duplicate_records INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_received ON uploads (received_at);
CREATE TABLE IF NOT EXISTS records (
    content_sha256 TEXT PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES uploads (request_id) ON DELETE CASCADE,
    member TEXT NOT NULL,
    kind TEXT NOT NULL,
    conversation_id TEXT,
    record_timestamp TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_request ON records (request_id);
CREATE INDEX IF NOT EXISTS records_conversation ON records (conversation_id);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY,
    model_key TEXT NOT NULL UNIQUE,
    model_name TEXT NOT NULL,
    model_source TEXT NOT NULL,
    embedding_dimension INTEGER,
    distance_metric TEXT,
    normalization TEXT,
    modalities TEXT NOT NULL,
    device_type TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS contributions (
    model_id INTEGER NOT NULL REFERENCES models (id),
    contributor TEXT NOT NULL,
    day TEXT NOT NULL,
    events INTEGER NOT NULL,
    load_failures INTEGER NOT NULL,
    inference_failures INTEGER NOT NULL,
    last_event_at TEXT NOT NULL,
    PRIMARY KEY (model_id, contributor, day)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contributions_contributor ON contributions (contributor);
CREATE INDEX IF NOT EXISTS contributions_day ON contributions (day);
CREATE TABLE IF NOT EXISTS seen_events (
    event_key TEXT PRIMARY KEY,
    contributor TEXT NOT NULL,
    day TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_events_contributor ON seen_events (contributor);
CREATE INDEX IF NOT EXISTS seen_events_day ON seen_events (day);
CREATE TABLE IF NOT EXISTS deletions (
    id INTEGER PRIMARY KEY,
    requested_at TEXT NOT NULL,
    via TEXT NOT NULL,
    contributions INTEGER NOT NULL,
    events INTEGER NOT NULL
);
"""


# 2: erasures (issue 26). Which users' records each upload holds (uploads indexed before it are read whole
# by an erasure: `users_indexed` 0), and the erasures received, pending until applied.
_SCHEMA_2 = """
ALTER TABLE uploads ADD COLUMN users_indexed INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS upload_users (
    user_hash TEXT NOT NULL,
    request_id TEXT NOT NULL REFERENCES uploads (request_id) ON DELETE CASCADE,
    PRIMARY KEY (user_hash, request_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS upload_users_request ON upload_users (request_id);
CREATE TABLE IF NOT EXISTS erasures (
    id INTEGER PRIMARY KEY,
    user_hash TEXT,
    erased_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    via TEXT NOT NULL,
    done_at TEXT,
    records INTEGER NOT NULL DEFAULT 0,
    archives_rewritten INTEGER NOT NULL DEFAULT 0,
    archives_removed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS erasures_pending ON erasures (done_at);
"""

# 3: the feedback browser and export (issue 27): each feedback record's browsable fields and its JSON.
_SCHEMA_3 = """
CREATE TABLE IF NOT EXISTS feedback (
    content_sha256 TEXT PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES uploads (request_id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    day TEXT NOT NULL,
    sentiment INTEGER,
    categories TEXT NOT NULL,
    user_feedback TEXT,
    record TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id);
CREATE INDEX IF NOT EXISTS feedback_at ON feedback (at, content_sha256);
CREATE INDEX IF NOT EXISTS feedback_day ON feedback (day, sentiment);
"""

# 4: the insights (issue 27): per-day counts kept on insert, each conversation's first day, turns and model,
# each feedback record's model, the uploads refused. Filled from the index once, at the first start after it.
_SCHEMA_4 = """
ALTER TABLE feedback ADD COLUMN model TEXT;
CREATE TABLE IF NOT EXISTS daily_counts (
    series TEXT NOT NULL,
    day TEXT NOT NULL,
    label TEXT NOT NULL,
    shard INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (series, day, label, shard)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conversation_turns (
    conversation_id TEXT PRIMARY KEY,
    first_day TEXT NOT NULL,
    turns INTEGER NOT NULL,
    last_at TEXT,
    model TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refusals (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    request_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    bytes INTEGER,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS refusals_received ON refusals (received_at);
CREATE TABLE IF NOT EXISTS insights_state (name TEXT PRIMARY KEY, built INTEGER NOT NULL);
INSERT INTO insights_state (name, built) VALUES ('rollups', 0) ON CONFLICT DO NOTHING
"""


class SQLiteStorage(SQLStorage):
    """The default backend: one SQLite file, WAL, every commit durable (synchronous=FULL)."""

    threads = 1  # one connection, used in order
    shared = False  # one node owns the file

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # A 202 or a telemetry reply is sent after the commit: it must survive a power cut (FULL).
            self._db = open_database(path, SQLITE_MIGRATIONS, "FULL")
        except (sqlite3.Error, SchemaTooNew) as exc:
            raise StorageFailure(f"{path}: {exc}" if isinstance(exc, sqlite3.Error) else str(exc)) from None

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """BEGIN IMMEDIATE ... COMMIT; a SQLite error inside becomes StorageFailure (others pass unchanged)."""
        try:
            with immediate_transaction(self._db) as db:
                yield db
        except sqlite3.Error as exc:
            raise StorageFailure(f"{self.path}: {exc}") from exc

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            return dicts(self._db.execute(sql, tuple(args)))
        except sqlite3.Error as exc:
            raise StorageFailure(f"{self.path}: {exc}") from exc

    def _is_duplicate_key(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def _forget_history(self) -> None:
        try:
            forget_history(self._db)
        except sqlite3.Error as exc:
            raise StorageFailure(f"{self.path}: {exc}") from exc

    def check(self) -> None:
        self._read("SELECT 1")

    def close(self) -> None:
        self._db.close()


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]


# Numbered migrations (lightspeed_common.sqlite): n brings a file from version n-1 to n. Never edit one
# that was released; add the next at the end.
SQLITE_MIGRATIONS = [
    _statements(_SCHEMA_1),  # 1: uploads, records, models, contributions, seen events, deletions
    _statements(_SCHEMA_2),  # 2: erasures
    _statements(_SCHEMA_3),  # 3: feedback, browsable and exportable
    _statements(_SCHEMA_4),  # 4: the insights' counts
]
SCHEMA_VERSION = len(SQLITE_MIGRATIONS)
