"""SQLite as the daemons use it: one connection, explicit IMMEDIATE transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal


class SchemaTooNew(Exception):
    """The file was written by a newer release, whose schema this one does not know."""


def open_database(
    path: Path, schema: Sequence[str], version: int, synchronous: Literal["NORMAL", "FULL"]
) -> sqlite3.Connection:
    """One connection for any thread: WAL, foreign keys on, a 5 s wait for another writer's lock, and
    `schema` (idempotent statements) applied at `version`. Raises sqlite3.Error, or SchemaTooNew."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=5000")
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found > version:
            raise SchemaTooNew(f"{path} has schema version {found}; this release knows {version}")
        with immediate_transaction(db):
            for statement in schema:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={version}")
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (the write lock now, not at the first write) ... COMMIT, or ROLLBACK on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
