"""SQL written once for SQLite and PostgreSQL: a session takes `?` placeholders and gives a DB-API cursor.

sqlite3's connection is such a session as it is; `postgres.QmarkSession` adapts psycopg's. The errors
and the password lookup are here, not in `postgres`, so a daemon that uses no PostgreSQL never loads
psycopg (about 25 MB).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from lightspeed_common.config_base import DatabaseConfig
from lightspeed_common.credentials import read_secret


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
