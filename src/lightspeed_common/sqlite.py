"""SQLite as the daemons use it: one connection, explicit IMMEDIATE transactions, numbered migrations.

A schema is a list of migrations, as for PostgreSQL (`postgres.migrate`):
migration n (counting from 1) brings the file from version n-1 to n, and the
file's `PRAGMA user_version` says which it has. A migration, once released, is
never edited: a change is a new one at the end.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import structlog

from lightspeed_common.sql import Migrations

log = structlog.get_logger(__name__)


class SchemaTooNew(Exception):
    """The file was written by a newer release, whose schema this one does not know."""


def open_database(path: Path, migrations: Migrations, synchronous: Literal["NORMAL", "FULL"]) -> sqlite3.Connection:
    """One connection for any thread: WAL, foreign keys on, deletes that overwrite, a 5 s wait for another
    writer's lock, and the schema brought to the newest version. Raises sqlite3.Error, or SchemaTooNew."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=5000")
        # A deleted row's bytes are overwritten, not left in free pages: an erasure leaves nothing to recover.
        db.execute("PRAGMA secure_delete=ON")
        migrate(db, path, migrations)
    except BaseException:
        db.close()
        raise
    return db


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, path: Path, migrations: Migrations) -> int:
    """Run the migrations the file lacks, in one transaction; the version found before."""
    newest = len(migrations)
    found = _version(db)
    if found < newest:
        with immediate_transaction(db):
            found = _version(db)  # another process may have migrated while this one waited for the lock
            for version in range(found, newest):
                for statement in migrations[version]:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={newest}")
        if found < newest:
            log.info("database_migrated", file=str(path), from_version=found, to_version=newest)
    if found > newest:
        raise SchemaTooNew(f"{path} has schema version {found}; this release knows {newest}")
    return found


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


def forget_history(db: sqlite3.Connection) -> None:
    """After an erasure: copy the write-ahead log into the file and empty it, so the pages it held from
    before (the erased rows among them) are gone from the disk too."""
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
