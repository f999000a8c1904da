"""The ingest's SQLite storage speaks its own errors: no handler sees sqlite3's."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.sqlite_storage import SCHEMA_VERSION, SQLiteStorage
from ingest.storage import Database, DuplicateUpload, RecordInfo, StorageFailure, UploadInfo


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


def test_a_second_upload_with_the_same_request_id_is_a_duplicate_and_publishes_nothing(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "ingest.sqlite3")
    published: list[str] = []
    record = RecordInfo("feedback/a.json", "feedback", "1" * 64, "c-1", None)
    storage.add_upload(_upload("batch"), [record], lambda: published.append("first"))
    with pytest.raises(DuplicateUpload):
        storage.add_upload(_upload("batch"), [record], lambda: published.append("second"))
    assert published == ["first"]
    assert storage.upload_totals()["uploads"] == 1
    storage.close()


async def test_database_run_passes_keyword_arguments(tmp_path: Path) -> None:
    db = Database(SQLiteStorage(tmp_path / "ingest.sqlite3"))
    assert await db.run(db.storage.recent_uploads, limit=5) == []
    await db.close()
