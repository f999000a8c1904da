"""The server's shared state: conversations, runtime settings, the telemetry queue and leases, in one
database, and opening the configured one.

- `queries`: the store's queries, written once for both databases (`StateStore`);
- `schema`: the tables; `sqlite` and `postgres`: the two backends;
- `conversations`: what a conversation and a turn are, and the protocol the handlers use;
- `settings`: the runtime settings (the feedback toggle, telemetry's state) kept in the store;
- `telemetry_queue`: the events waiting to be sent, bounded, kept in the store;
- leases (who alone does a job, such as sending telemetry, until when): queries in `queries`.

SQLite (`conversations.sqlite3` in the state directory, WAL: any number of worker processes on one
host) by default; PostgreSQL (`service.database.url`) for API servers on several hosts, its schema
versioned in `schema_version`; SQLite's in the file's `user_version`. Both schemas are numbered
migrations (`sqlite.SQLITE_MIGRATIONS`, `postgres.POSTGRES_MIGRATIONS`).
"""

from __future__ import annotations

import sqlite3

import structlog

from lightspeed.store.queries import StateStore
from lightspeed.store.sqlite import DATABASE_FILE, SQLiteStateStore
from lightspeed_common.atomic import mark_migrated
from lightspeed_common.config import AppConfig
from lightspeed_common.errors import StorageError
from lightspeed_common.sql import DatabaseError, DatabaseUnavailable, database_password
from lightspeed_common.sqlite import SchemaTooNew

log = structlog.get_logger(__name__)

LEGACY_CONVERSATIONS = "conversations.jsonl"


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
            from lightspeed.store.postgres import PostgresStateStore  # noqa: PLC0415 - psycopg only when configured

            store: StateStore = PostgresStateStore(service.database, password)
        except (DatabaseError, DatabaseUnavailable) as exc:
            unreachable = isinstance(exc, DatabaseUnavailable)
            raise StorageError("state database", str(service.database.url), str(exc), temporary=unreachable) from None
    else:
        try:
            # Owners are remembered with workers too: a worker that deletes conversations moves the change stamp.
            store = SQLiteStateStore(state_dir / DATABASE_FILE)
        except (sqlite3.Error, SchemaTooNew) as exc:
            raise StorageError("state", state_dir, f"{DATABASE_FILE}: {exc}") from None
    legacy = state_dir / LEGACY_CONVERSATIONS
    if legacy.exists():
        imported = store.import_owners(legacy)
        mark_migrated(legacy)
        log.info("conversations_migrated", imported=imported, source=str(legacy))
    return store


def shared(config: AppConfig) -> bool:
    """Whether other processes write the store too, so what is cached must be read again when it changed (with
    SQLite, when its change stamp moved; with PostgreSQL, on every request)."""
    return config.service.workers > 1 or config.service.database.url is not None
