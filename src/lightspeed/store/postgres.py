"""The state store in PostgreSQL (`service.database.url`), for API servers on several hosts.

Its own module so that a server without PostgreSQL never loads psycopg.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from lightspeed.store.queries import StateStore
from lightspeed.store.schema import AUDIT_COLUMNS, CONVERSATION_TABLES, SHARED_TABLES
from lightspeed_common.config_base import DatabaseConfig
from lightspeed_common.postgres import QmarkSession, migrate, open_pool, read_rows, transaction
from lightspeed_common.sql import Session

POSTGRES_MIGRATIONS = [
    [
        *CONVERSATION_TABLES,
        *SHARED_TABLES,
        "CREATE TABLE telemetry_queue (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, line TEXT NOT NULL)",
    ],
    [f"CREATE TABLE audit (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {AUDIT_COLUMNS})"],
]


class PostgresStateStore(StateStore):
    """The store in PostgreSQL (`service.database.url`), for API servers on several hosts."""

    def __init__(self, config: DatabaseConfig, password: str | None) -> None:
        super().__init__(threads=config.pool_size, remembered=0)
        self._pool = open_pool(config, password, "lightspeed")
        try:
            migrate(self._pool, "lightspeed", POSTGRES_MIGRATIONS)
        except BaseException:
            self._pool.close()
            raise

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with transaction(self._pool) as conn:
            yield QmarkSession(conn)

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return read_rows(self._pool, sql, args)

    def _close(self) -> None:
        self._pool.close()
