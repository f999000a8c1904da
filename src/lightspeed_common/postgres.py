"""PostgreSQL as the daemons use it: a pool of psycopg connections, versioned migrations at start.

Why psycopg 3 (not asyncpg): the storage implementations are synchronous code
on their own threads, the same shape as the SQLite ones (transactions as
`with` blocks), which psycopg's sync API and its pool fit; and it is libpq,
so every libpq setting an operator knows (sslmode, sslrootcert, a service
file, PGPASSFILE) works in the URL as it does for psql.

Migrations: one `schema_version` table, one row per component (`ingest`,
`lightspeed`); a component's numbered steps run in order, each in the
transaction that records its number, under an advisory lock so that two
nodes starting at once apply them once. A database written by a newer
release (a higher number than this one knows) is refused. A migration library
(Alembic, yoyo) would bring its own files, CLI and state table for what is
here a list of SQL statements per version.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
import structlog

from lightspeed_common.config_base import DatabaseConfig
from lightspeed_common.sql import Cursor, DatabaseError, DatabaseUnavailable, Migrations, dicts

log = structlog.get_logger(__name__)
# psycopg's SQLSTATE classes that mean "the server or the connection is gone", not "this statement is wrong".
_UNAVAILABLE = ("08", "57P")


def describe(exc: BaseException) -> str:
    """A driver error as one line for logs and readiness, never with the password (libpq never prints it)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text


def translate(exc: BaseException) -> DatabaseUnavailable | DatabaseError:
    """A driver error as DatabaseUnavailable (try later) or DatabaseError (this will not work)."""
    if isinstance(exc, psycopg_pool.PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate is None or sqlstate.startswith(_UNAVAILABLE):
            return DatabaseUnavailable(f"database unreachable: {describe(exc)}")
    return DatabaseError(describe(exc))


def open_pool(config: DatabaseConfig, password: str | None, name: str) -> psycopg_pool.ConnectionPool:
    """A pool of `config.pool_size` connections; waits up to `connect_timeout_seconds` for the first one.

    Raises DatabaseUnavailable when the server cannot be reached then, DatabaseError when it refuses
    (a wrong password, no such database). Connections are checked before use, so one broken by a
    database restart is replaced rather than handed to a request.
    """
    assert config.url is not None
    # Autocommit: a read is one round trip; writes open their transaction explicitly (`transaction`).
    kwargs: dict[str, Any] = {
        "application_name": name,
        "connect_timeout": max(1, round(config.connect_timeout_seconds)),
        "autocommit": True,
    }
    if password is not None:
        kwargs["password"] = password
    try:  # one connection first: its error names the cause (refused, wrong password, no such database)
        psycopg.connect(str(config.url), **kwargs).close()
    except psycopg.Error as exc:
        raise translate(exc) from None
    pool = psycopg_pool.ConnectionPool(
        str(config.url),
        kwargs=kwargs,
        min_size=1,
        max_size=config.pool_size,
        timeout=config.connect_timeout_seconds,
        # No check before each use (a round trip on every call): a connection a restart broke fails
        # once, and `read_rows` replaces the broken ones and reads again; a write answers 503 once.
        name=name,
        open=False,
    )
    try:
        pool.open(wait=True, timeout=config.connect_timeout_seconds)
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        pool.close()
        raise DatabaseUnavailable(f"database unreachable: {describe(exc)}") from None
    return pool


@contextmanager
def transaction(pool: psycopg_pool.ConnectionPool) -> Iterator[psycopg.Connection[Any]]:
    """A connection in a transaction: committed when the block ends, rolled back on any error.
    Driver errors come out as DatabaseUnavailable or DatabaseError; others pass unchanged."""
    try:
        with pool.connection() as conn, conn.transaction():
            yield conn
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        raise translate(exc) from exc


@contextmanager
def reading(pool: psycopg_pool.ConnectionPool) -> Iterator[psycopg.Connection[Any]]:
    """A connection for one statement outside a transaction (one round trip); errors as in `transaction`."""
    try:
        with pool.connection() as conn:
            yield conn
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        raise translate(exc) from exc


def migrate(pool: psycopg_pool.ConnectionPool, component: str, migrations: Migrations) -> int:
    """Bring `component`'s tables to the newest version; returns the version found before."""
    with transaction(pool) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("schema_version"),))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version WHERE component = %s", (component,)).fetchone()
        found = 0 if row is None else int(row[0])
        if found > len(migrations):
            raise DatabaseError(
                f"the database has {component} schema version {found}; this release knows {len(migrations)}"
            )
        for version in range(found, len(migrations)):
            for statement in migrations[version]:
                conn.execute(statement.encode())
        conn.execute(
            "INSERT INTO schema_version VALUES (%s, %s) "
            "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            (component, len(migrations)),
        )
    if found < len(migrations):
        log.info("database_migrated", component=component, from_version=found, to_version=len(migrations))
    return found


def _lock_key(name: str) -> int:
    return zlib.crc32(f"lightspeed:{name}".encode())


def read_rows(pool: psycopg_pool.ConnectionPool, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """One read outside a transaction, as dicts. If the connection it got was broken (the database
    restarted since), the pool's idle connections are checked and the read runs once more."""
    for attempt in range(2):
        try:
            with reading(pool) as conn:
                return dicts(QmarkSession(conn).execute(sql, args))
        except DatabaseUnavailable:
            if attempt:
                raise
            pool.check()
    raise AssertionError("unreachable")


class QmarkSession:
    """A psycopg connection that takes `?` placeholders (`lightspeed_common.sql.Session`); the queries
    written for both databases hold no literal `?`."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Cursor:
        return self._conn.execute(sql.replace("?", "%s").encode(), tuple(args))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Cursor:
        cursor = self._conn.cursor()
        cursor.executemany(sql.replace("?", "%s").encode(), [tuple(row) for row in rows])
        return cursor
