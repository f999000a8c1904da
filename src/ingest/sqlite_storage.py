"""The default storage of lightspeed-ingest: one SQLite file in WAL mode, every commit durable.

See `storage` for what is kept; this module is the only one that speaks SQLite.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from ingest.storage import (
    MODEL_DIMENSIONS,
    DuplicateUpload,
    RecordInfo,
    RetentionResult,
    StorageFailure,
    StoredUpload,
    UploadInfo,
    contributor_hash,
    event_key,
    iso,
)
from lightspeed_common.sqlite import SchemaTooNew, immediate_transaction, open_database
from lightspeed_common.telemetry_schema import ModelRegistrationEvent

SCHEMA_VERSION = 1
_SCHEMA = """
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


class SQLiteStorage:
    """The default backend: one SQLite file, WAL, every commit durable (synchronous=FULL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # A 202 or a telemetry reply is sent after the commit: it must survive a power cut (FULL).
            self._db = open_database(path, _statements(_SCHEMA), SCHEMA_VERSION, "FULL")
        except (sqlite3.Error, SchemaTooNew) as exc:
            raise StorageFailure(f"{path}: {exc}" if isinstance(exc, sqlite3.Error) else str(exc)) from None
        self._db.row_factory = sqlite3.Row

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; a SQLite error inside becomes StorageFailure (others pass unchanged)."""
        try:
            with immediate_transaction(self._db) as db:
                yield db
        except sqlite3.Error as exc:
            raise StorageFailure(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    # -- uploads -------------------------------------------------------------

    def find_upload(self, request_id: str) -> StoredUpload | None:
        row = self._db.execute(
            "SELECT request_id, records, new_records, duplicate_records FROM uploads WHERE request_id = ?",
            (request_id,),
        ).fetchone()
        return None if row is None else StoredUpload(row[0], row[1], row[2], row[3], duplicate_request=True)

    def add_upload(self, upload: UploadInfo, records: list[RecordInfo], publish: Callable[[], None]) -> StoredUpload:
        """Index the upload and its records; `publish` (moving the archive in place) runs inside the transaction.

        A crash before the commit leaves an archive without a row, which start-up
        removes: the sender got no 202 and sends it again.
        """
        with self._transaction() as db:
            try:
                self._insert_upload(db, upload)
            except sqlite3.IntegrityError:
                raise DuplicateUpload(upload.request_id) from None
            new = 0
            for record in records:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        record.content_sha256,
                        upload.request_id,
                        record.member,
                        record.kind,
                        record.conversation_id,
                        record.timestamp,
                    ),
                )
                new += cursor.rowcount
            stored = StoredUpload(upload.request_id, len(records), new, len(records) - new)
            db.execute(
                "UPDATE uploads SET records = ?, new_records = ?, duplicate_records = ? WHERE request_id = ?",
                (stored.records, stored.new_records, stored.duplicate_records, upload.request_id),
            )
            publish()
        return stored

    @staticmethod
    def _insert_upload(db: sqlite3.Connection, upload: UploadInfo) -> None:
        db.execute(
            "INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0)",
            (
                upload.request_id,
                iso(upload.received_at),
                upload.service,
                upload.category,
                upload.archive,
                upload.size,
                upload.sha256,
            ),
        )

    def known_archives(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT archive FROM uploads")}

    def recent_uploads(self, limit: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT request_id, received_at, service, category, archive, bytes, sha256, records, new_records, "
            "duplicate_records FROM uploads ORDER BY received_at DESC, rowid DESC LIMIT ?",
            (limit,),
        )
        return [dict(row) for row in rows]

    def upload_totals(self) -> dict[str, int]:
        """Sums over the kept uploads, and the distinct records kept per kind (`feedback_records`, ...)."""
        row = self._db.execute(
            "SELECT COUNT(*) AS uploads, COALESCE(SUM(bytes), 0) AS bytes, COALESCE(SUM(records), 0) AS records, "
            "COALESCE(SUM(new_records), 0) AS new_records, "
            "COALESCE(SUM(duplicate_records), 0) AS duplicate_records FROM uploads"
        ).fetchone()
        totals = dict(row)
        for kind, count in self._db.execute("SELECT kind, COUNT(*) FROM records GROUP BY kind"):
            totals[f"{kind}_records"] = count
        return totals

    def expired_archives(self, before: datetime) -> list[str]:
        rows = self._db.execute("SELECT archive FROM uploads WHERE received_at < ?", (iso(before),))
        return [row[0] for row in rows]

    # -- telemetry -----------------------------------------------------------

    def known_contributors(self, contributors: list[str]) -> set[str]:
        """Which of these (model, installation) hashes have contributions stored."""
        known: set[str] = set()
        for start in range(0, len(contributors), 500):
            chunk = contributors[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT DISTINCT contributor FROM contributions WHERE contributor IN ({marks})",  # noqa: S608 - placeholders only
                chunk,
            )
            known.update(row[0] for row in rows)
        return known

    def add_events(self, events: list[ModelRegistrationEvent], max_per_model_day: int) -> list[str]:
        """Count valid events: `accepted` for each new one, `duplicate` for one already counted (a re-send),
        `capped` past `max_per_model_day` stored events of its model that day (not stored, not remembered).
        """
        outcomes: list[str] = []
        with self._transaction() as db:
            model_ids: dict[str, int] = {}
            day_counts: dict[tuple[int, str], int] = {}
            for event in events:
                contributor = contributor_hash(event.model_name, event.client_id)
                day = event.timestamp[:10]
                model_id = self._model_id(db, event, model_ids)
                if (model_id, day) not in day_counts:
                    row = db.execute(
                        "SELECT COALESCE(SUM(events), 0) FROM contributions WHERE model_id = ? AND day = ?",
                        (model_id, day),
                    ).fetchone()
                    day_counts[model_id, day] = int(row[0])
                if db.execute("SELECT 1 FROM seen_events WHERE event_key = ?", (event_key(event),)).fetchone():
                    outcomes.append("duplicate")
                    continue
                if day_counts[model_id, day] >= max_per_model_day:
                    outcomes.append("capped")
                    continue
                db.execute("INSERT INTO seen_events VALUES (?, ?, ?)", (event_key(event), contributor, day))
                day_counts[model_id, day] += 1
                outcomes.append("accepted")
                db.execute(
                    "INSERT INTO contributions VALUES (?, ?, ?, 1, ?, ?, ?) "
                    "ON CONFLICT (model_id, contributor, day) DO UPDATE SET "
                    "events = events + 1, load_failures = load_failures + excluded.load_failures, "
                    "inference_failures = inference_failures + excluded.inference_failures, "
                    "last_event_at = max(last_event_at, excluded.last_event_at)",
                    (
                        model_id,
                        contributor,
                        day,
                        int(not event.load_success),
                        int(not event.inference_success),
                        event.timestamp,
                    ),
                )
        return outcomes

    @staticmethod
    def _model_id(db: sqlite3.Connection, event: ModelRegistrationEvent, cache: dict[str, int]) -> int:
        values = [getattr(event, name) for name in MODEL_DIMENSIONS]
        values[MODEL_DIMENSIONS.index("modalities")] = ",".join(sorted(event.modalities))
        key = json.dumps(values)
        if key in cache:
            return cache[key]
        row = db.execute("SELECT id FROM models WHERE model_key = ?", (key,)).fetchone()
        if row is None:
            row = db.execute(
                f"INSERT INTO models (model_key, {', '.join(MODEL_DIMENSIONS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608 - fixed column names
                "RETURNING id",
                (key, *values),
            ).fetchone()
        cache[key] = int(row[0])
        return cache[key]

    def model_counts(self) -> list[dict[str, Any]]:
        """Per model: events, distinct contributing installations, failures, first and last day."""
        rows = self._db.execute(
            f"SELECT {', '.join('m.' + name for name in MODEL_DIMENSIONS)}, "  # noqa: S608 - fixed column names
            "SUM(c.events) AS events, COUNT(DISTINCT c.contributor) AS clients, "
            "SUM(c.load_failures) AS load_failures, SUM(c.inference_failures) AS inference_failures, "
            "MIN(c.day) AS first_day, MAX(c.day) AS last_day "
            "FROM models m JOIN contributions c ON c.model_id = m.id GROUP BY m.id "
            "ORDER BY clients DESC, events DESC, m.model_name"
        )
        models = []
        for row in rows:
            model = dict(row)
            model["modalities"] = model["modalities"].split(",") if model["modalities"] else []
            models.append(model)
        return models

    def delete_client(self, client_id: str, via: str, now: datetime) -> dict[str, int]:
        """Remove every contribution of `client_id`: its hash is computed for each known model name."""
        with self._transaction() as db:
            names = [row[0] for row in db.execute("SELECT DISTINCT model_name FROM models")]
            contributors = [(contributor_hash(name, client_id),) for name in names]
            contributions = events = 0
            for (contributor,) in contributors:
                contributions += db.execute("DELETE FROM contributions WHERE contributor = ?", (contributor,)).rowcount
                events += db.execute("DELETE FROM seen_events WHERE contributor = ?", (contributor,)).rowcount
            self._drop_unused_models(db)
            db.execute(
                "INSERT INTO deletions (requested_at, via, contributions, events) VALUES (?, ?, ?, ?)",
                (iso(now), via, contributions, events),
            )
        return {"contributions": contributions, "events": events}

    def deletion_log(self, limit: int) -> list[dict[str, Any]]:
        """What deletion requests removed; nothing identifies the requester."""
        rows = self._db.execute(
            "SELECT requested_at, via, contributions, events FROM deletions ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [dict(row) for row in rows]

    @staticmethod
    def _drop_unused_models(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM models WHERE id NOT IN (SELECT DISTINCT model_id FROM contributions)")

    # -- retention -----------------------------------------------------------

    def enforce_retention(
        self, uploads_before: datetime, telemetry_before: datetime, seen_before: datetime
    ) -> RetentionResult:
        """Forget uploads received before `uploads_before` (the caller has deleted their
        `expired_archives` first), contributions dated before `telemetry_before`, and re-send keys dated before
        `seen_before` (such events are refused as too old anyway)."""
        with self._transaction() as db:
            uploads = db.execute("DELETE FROM uploads WHERE received_at < ?", (iso(uploads_before),)).rowcount
            contributions = db.execute(
                "DELETE FROM contributions WHERE day < ?", (telemetry_before.date().isoformat(),)
            ).rowcount
            seen = db.execute("DELETE FROM seen_events WHERE day < ?", (seen_before.date().isoformat(),)).rowcount
            self._drop_unused_models(db)
        return RetentionResult(uploads, contributions, seen)


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]
