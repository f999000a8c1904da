"""The database template both the server's store and the ingest's storage follow.

- SQL written once for SQLite and PostgreSQL: a session takes `?` placeholders
  and gives a DB-API cursor. sqlite3's connection is such a session as it is;
  `postgres.QmarkSession` adapts psycopg's.
- `SQLDatabase`: a backend's write transaction and snapshot read, the two
  things each backend writes (with `sqlite.immediate_transaction` or
  `postgres.transaction`); the queries are written once above them.
- `DatabaseThreads`: every call on the database's own threads, never the
  event loop's, and a database that cannot be reached (`DatabaseUnavailable`)
  answered 503 with `Retry-After`.

The errors and the password lookup are here, not in `postgres`, so a daemon
that uses no PostgreSQL never loads psycopg (about 25 MB).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, ParamSpec, Protocol, TypeVar

from lightspeed_common.config_base import DatabaseConfig
from lightspeed_common.credentials import read_secret
from lightspeed_common.errors import ServiceUnavailable

P = ParamSpec("P")
T = TypeVar("T")
# A schema, for either database: migrations[n] brings it from version n to n + 1.
Migrations = Sequence[Sequence[str]]
UNAVAILABLE_RETRY_AFTER = "5"  # seconds; a restarting database is usually back within a few


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Session(Protocol):
    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Cursor: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Cursor: ...


def dicts(cursor: Cursor) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class DatabaseUnavailable(Exception):
    """The database cannot be reached now (refused, lost, timed out); trying again later may work."""


class DatabaseError(Exception):
    """The database refused a statement or holds a schema this release does not know."""


def database_password(config: DatabaseConfig) -> str | None:
    """The password from its file or systemd credential (blocking); OSError names an unreadable file.
    An empty one (install.sh creates the credential files empty) is none."""
    return read_secret(None, config.password_file, config.password_credential) or None


class SQLDatabase:
    """What each backend writes; the queries above it are written once, for both databases."""

    def _transaction(self) -> AbstractContextManager[Session]:
        """A write transaction (BEGIN IMMEDIATE for SQLite), committed when the block ends."""
        raise NotImplementedError

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts, from a consistent snapshot."""
        raise NotImplementedError

    def _write(self, work: Callable[[Session], T]) -> T:
        """`work` in a write transaction (a backend may run it again after a deadlock)."""
        with self._transaction() as session:
            return work(session)


class DatabaseThreads:
    """A database driven from asyncio: calls run on its own threads (one for SQLite: in order)."""

    def __init__(self, threads: int, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def call(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`call` on a database thread, its exceptions unchanged."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(call, *args, **kwargs))

    async def run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`call` on a database thread; an unreachable database is ServiceUnavailable (503, Retry-After)."""
        try:
            return await self.call(call, *args, **kwargs)
        except DatabaseUnavailable as exc:
            raise ServiceUnavailable(
                "Database unavailable", f"{exc}; try again later", headers={"Retry-After": UNAVAILABLE_RETRY_AFTER}
            ) from None

    async def close(self, closing: Callable[[], None]) -> None:
        """`closing` (the connections') on a database thread, then the threads end."""
        await self.call(closing)
        self._executor.shutdown(wait=True)
