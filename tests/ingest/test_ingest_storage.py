"""The ingest's storage speaks its own errors: no handler sees sqlite3's or psycopg's.

The tests that hold for any backend run on SQLite and on a real PostgreSQL server.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.sqlite_storage import SCHEMA_VERSION, SQLiteStorage
from ingest.storage import Database, DuplicateUpload, RecordInfo, Storage, StorageFailure, UploadInfo
from tests.support import restore_dump, sqlite_schema


def _upload(request_id: str) -> UploadInfo:
    return UploadInfo(request_id, datetime.now(UTC), "lightspeed", "periodic", f"{request_id}.tar.gz", 10, "0" * 64)


def test_a_database_from_a_newer_version_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "ingest.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StorageFailure, match=f"schema version {SCHEMA_VERSION + 1}"):
        SQLiteStorage(path)


def test_a_file_that_is_not_a_database_is_a_storage_failure(tmp_path: Path) -> None:
    path = tmp_path / "ingest.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageFailure, match=str(path)):
        SQLiteStorage(path)


def test_a_second_upload_with_the_same_request_id_is_a_duplicate_and_publishes_nothing(storage: Storage) -> None:
    published: list[str] = []
    record = RecordInfo("feedback/a.json", "feedback", "1" * 64, "c-1", None)
    storage.add_upload(_upload("batch"), [record], lambda: published.append("first"))
    with pytest.raises(DuplicateUpload):
        storage.add_upload(_upload("batch"), [record], lambda: published.append("second"))
    assert published == ["first"]
    assert storage.upload_totals()["uploads"] == 1
    storage.close()


async def test_database_run_passes_keyword_arguments(storage: Storage) -> None:
    db = Database(storage)
    assert await db.run(db.storage.recent_uploads, limit=5) == []
    await db.close()


def test_a_publish_that_fails_leaves_no_upload_and_no_record(storage: Storage) -> None:
    """The archive is moved in place inside the transaction: if that fails, nothing is indexed."""
    record = RecordInfo("feedback/a.json", "feedback", "2" * 64, "c-1", None)

    def disk_full() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        storage.add_upload(_upload("batch"), [record], disk_full)
    assert storage.find_upload("batch") is None
    assert storage.upload_totals()["uploads"] == 0
    assert storage.add_upload(_upload("batch"), [record], lambda: None).new_records == 1
    storage.close()


def test_a_database_the_release_before_numbered_migrations_wrote_is_brought_to_the_newest_schema(
    tmp_path: Path,
) -> None:
    fresh, old = tmp_path / "fresh.sqlite3", tmp_path / "old.sqlite3"
    SQLiteStorage(fresh).close()
    restore_dump(old, "ingest-v1.sql")
    assert sqlite_schema(old)[0] == 1
    storage = SQLiteStorage(old)
    try:
        assert sqlite_schema(old) == sqlite_schema(fresh)
        assert sqlite_schema(old)[0] == SCHEMA_VERSION
        storage.add_upload(_upload("r1"), [], lambda: None)
        assert storage.find_upload("r1") is not None
    finally:
        storage.close()
