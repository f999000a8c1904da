"""The ingest's queries, written once for both backends (`SQLiteStorage`, `PostgresStorage`).

A backend supplies a session (`execute(sql, args)` with `?` placeholders, a DB-API cursor back),
its transactions, and the few words its dialect spells differently. Every query here works on
both and keeps the same answers: the same tests run against each.

What several writers at once need (PostgreSQL nodes) is written into the queries, and costs SQLite
nothing: records are inserted in hash order with `ON CONFLICT DO NOTHING`, so two uploads sharing
records never wait on each other in a cycle; a telemetry event's re-send key is inserted `ON CONFLICT
DO NOTHING` and only the writer whose insert took it counts the event.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from ingest.sql_erasure import ErasureQueries
from ingest.sql_feedback import FeedbackQueries, TranscriptQueries
from ingest.sql_insights import Scope
from ingest.storage import (
    MODEL_DIMENSIONS,
    DailyLimits,
    DuplicateUpload,
    RecordInfo,
    RetentionResult,
    StoredUpload,
    UploadInfo,
    contributor_hash,
    event_key,
    iso,
)
from lightspeed_common.sql import Session
from lightspeed_common.telemetry_schema import ModelRegistrationEvent

T = TypeVar("T")
CHUNK = 500  # rows a multi-row INSERT carries (500 x 6 values: within SQLite's and PostgreSQL's limits)


class SQLStorage(ErasureQueries, FeedbackQueries, TranscriptQueries):
    """Everything `Storage` asks, on a backend's sessions (see the subclasses)."""

    # The dialect: the larger of two values, the column that orders rows by insertion.
    GREATEST = "max"
    INSERTION_ORDER = "rowid"

    # `_transaction` and `_read` (lightspeed_common.sql.SQLDatabase): the backend's errors come out as
    # StorageFailure.

    def _is_duplicate_key(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def _one_of(self, column: str, values: Sequence[str | int]) -> tuple[str, list[Any]]:
        """`column` is one of `values`: the condition and its arguments."""
        return f"{column} IN (SELECT value FROM json_each(?))", [json.dumps(values)]  # noqa: S608 - a fixed name

    # -- uploads -------------------------------------------------------------

    def find_upload(self, request_id: str) -> StoredUpload | None:
        rows = self._read(
            "SELECT request_id, records, new_records, duplicate_records FROM uploads WHERE request_id = ?",
            (request_id,),
        )
        return None if not rows else StoredUpload(**rows[0], duplicate_request=True)

    def add_upload(self, upload: UploadInfo, records: list[RecordInfo], publish: Callable[[], None]) -> StoredUpload:
        """Index the upload and its records; `publish` (moving the archive in place) runs inside the
        transaction, last. A crash before the commit leaves an archive without a row, which recovery
        removes: the sender got no 202 and sends it again."""
        with self._transaction() as session:
            try:
                session.execute(
                    "INSERT INTO uploads (request_id, received_at, service, category, archive, bytes, sha256, "
                    "records, new_records, duplicate_records) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0)",
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
            except Exception as exc:
                if self._is_duplicate_key(exc):  # two arrived at once; the other one was stored
                    raise DuplicateUpload(upload.request_id) from None
                raise
            new = self._insert_records(session, upload.request_id, records)
            self._index_users(session, upload.request_id, records, upload.received_at)
            self._index_feedback(session, upload.request_id, records)
            self._index_insights(session, upload, records, new)
            stored = StoredUpload(upload.request_id, len(records), len(new), len(records) - len(new))
            session.execute(
                "UPDATE uploads SET records = ?, new_records = ?, duplicate_records = ? WHERE request_id = ?",
                (stored.records, stored.new_records, stored.duplicate_records, upload.request_id),
            )
            publish()
        return stored

    @staticmethod
    def _insert_records(session: Session, request_id: str, records: list[RecordInfo]) -> set[str]:
        """Index the records in hash order (two uploads sharing records never wait on each other in a
        cycle), several to a statement; the SHA-256 of those that were new."""
        ordered = sorted(records, key=lambda r: r.content_sha256)
        new: set[str] = set()
        for start in range(0, len(ordered), CHUNK):
            chunk = ordered[start : start + CHUNK]
            values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk))
            cursor = session.execute(
                "INSERT INTO records (content_sha256, request_id, member, kind, conversation_id, "  # noqa: S608
                f"record_timestamp) VALUES {values} ON CONFLICT (content_sha256) DO NOTHING RETURNING content_sha256",
                [
                    value
                    for r in chunk
                    for value in (r.content_sha256, request_id, r.member, r.kind, r.conversation_id, r.timestamp)
                ],
            )
            new.update(row[0] for row in cursor.fetchall())
        return new

    def known_archives(self) -> set[str]:
        return {row["archive"] for row in self._read("SELECT archive FROM uploads")}

    def recent_uploads(self, limit: int) -> list[dict[str, Any]]:
        sql = (
            "SELECT request_id, received_at, service, category, archive, bytes, sha256, records, new_records, "  # noqa: S608
            f"duplicate_records FROM uploads ORDER BY received_at DESC, {self.INSERTION_ORDER} DESC LIMIT ?"
        )
        return self._read(sql, (limit,))

    def upload_totals(self) -> dict[str, int]:
        """Sums over the kept uploads, and the distinct records kept per kind (`feedback_records`, ...)."""
        rows = self._read(
            "SELECT COUNT(*) AS uploads, COALESCE(SUM(bytes), 0) AS bytes, COALESCE(SUM(records), 0) AS records, "
            "COALESCE(SUM(new_records), 0) AS new_records, "
            "COALESCE(SUM(duplicate_records), 0) AS duplicate_records FROM uploads"
        )
        totals = {key: int(value) for key, value in rows[0].items()}
        for row in self._read("SELECT kind, COUNT(*) AS n FROM records GROUP BY kind"):
            totals[f"{row['kind']}_records"] = int(row["n"])
        return totals

    def expired_archives(self, before: datetime) -> list[str]:
        return [
            row["archive"] for row in self._read("SELECT archive FROM uploads WHERE received_at < ?", (iso(before),))
        ]

    # -- telemetry -----------------------------------------------------------

    def known_contributors(self, contributors: list[str]) -> set[str]:
        """Which of these (model, installation) hashes have contributions stored."""
        condition, args = self._one_of("contributor", contributors)
        rows = self._read(f"SELECT DISTINCT contributor FROM contributions WHERE {condition}", args)  # noqa: S608
        return {row["contributor"] for row in rows}

    def add_events(self, events: list[ModelRegistrationEvent], limits: DailyLimits) -> list[str]:
        """Count valid events: `accepted` for each new one, `duplicate` for one already counted (a re-send),
        `capped` past one of the `limits` on its model's day (not stored, not remembered).
        With several writers the caps are soft ones: each may let its last few events past them."""
        return self._write(lambda session: self._add_events(session, events, limits))

    def _add_events(self, session: Session, events: list[ModelRegistrationEvent], limits: DailyLimits) -> list[str]:
        """Set-based, so a batch costs a handful of statements, not several per event."""
        rows = [
            (event, event_key(event), contributor_hash(event.model_name, event.client_id), event.timestamp[:10])
            for event in events
        ]
        models = self._model_ids(session, events)
        condition, args = self._one_of("event_key", [key for _, key, _, _ in rows])
        seen = {row[0] for row in session.execute(f"SELECT event_key FROM seen_events WHERE {condition}", args)}  # noqa: S608
        model_days, contributor_days = self._day_counts(session, models, rows)
        left_for_sender = dict(limits.left_for_sender)
        outcomes: list[str] = []
        candidates: dict[str, int] = {}  # event key -> its index, for those to count
        for index, (model_id, (event, key, contributor, day)) in enumerate(zip(models, rows, strict=True)):
            if key in seen or key in candidates:
                outcomes.append("duplicate")
            elif (
                model_days[model_id, day] >= limits.per_model
                or contributor_days[contributor, day] >= limits.per_contributor
                or left_for_sender.get(event.model_name, 1) <= 0
            ):
                outcomes.append("capped")
            else:
                model_days[model_id, day] += 1
                contributor_days[contributor, day] += 1
                if event.model_name in left_for_sender:
                    left_for_sender[event.model_name] -= 1
                candidates[key] = index
                outcomes.append("accepted")
        taken = self._take_keys(session, [rows[i][1:] for i in candidates.values()])
        accepted = []
        for key, index in candidates.items():
            if key in taken:
                accepted.append(index)
            else:  # another node counted this re-send a moment ago
                outcomes[index] = "duplicate"
        self._count_contributions(session, [(models[i], *rows[i]) for i in accepted])
        return outcomes

    def _day_counts(
        self, session: Session, models: list[int], rows: list[tuple[ModelRegistrationEvent, str, str, str]]
    ) -> tuple[dict[tuple[int, str], int], dict[tuple[str, str], int]]:
        """Events stored so far on the batch's days: per (model, day), and per (contributor, day)."""
        model_days = dict.fromkeys(((model_id, row[3]) for model_id, row in zip(models, rows, strict=True)), 0)
        contributor_days = dict.fromkeys(((row[2], row[3]) for row in rows), 0)
        in_models, model_args = self._one_of("model_id", sorted({m for m, _ in model_days}))
        in_days, day_args = self._one_of("day", sorted({d for _, d in model_days}))
        in_contributors, contributor_args = self._one_of("contributor", sorted({c for c, _ in contributor_days}))
        for model_id, day, stored in session.execute(
            f"SELECT model_id, day, SUM(events) FROM contributions WHERE {in_models} AND {in_days} "  # noqa: S608
            "GROUP BY model_id, day",
            model_args + day_args,
        ):
            if (model_id, day) in model_days:
                model_days[model_id, day] = int(stored)
        for contributor, day, stored in session.execute(
            # model_id first: the primary key (model_id, contributor, day) finds the rows.
            f"SELECT contributor, day, events FROM contributions WHERE {in_models} AND {in_contributors} "  # noqa: S608
            f"AND {in_days}",
            model_args + contributor_args + day_args,
        ):
            if (contributor, day) in contributor_days:
                contributor_days[contributor, day] = int(stored)
        return model_days, contributor_days

    def _count_contributions(
        self, session: Session, accepted: list[tuple[int, ModelRegistrationEvent, str, str, str]]
    ) -> None:
        """Add the accepted events to their (model, contributor, day) rows, one statement per row."""
        counts: dict[tuple[int, str, str], list[Any]] = {}
        for model_id, event, _, contributor, day in accepted:
            total = counts.setdefault((model_id, contributor, day), [0, 0, 0, event.timestamp])
            total[0] += 1
            total[1] += int(not event.load_success)
            total[2] += int(not event.inference_success)
            total[3] = max(total[3], event.timestamp)
        session.executemany(  # GREATEST is a fixed word
            "INSERT INTO contributions (model_id, contributor, day, events, load_failures, inference_failures, "  # noqa: S608
            "last_event_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (model_id, contributor, day) DO UPDATE SET "
            "events = contributions.events + excluded.events, "
            "load_failures = contributions.load_failures + excluded.load_failures, "
            "inference_failures = contributions.inference_failures + excluded.inference_failures, "
            f"last_event_at = {self.GREATEST}(contributions.last_event_at, excluded.last_event_at)",
            [(*group, *total) for group, total in sorted(counts.items())],
        )
        self._add_counts(session, Counter(("telemetry", day, event.model_name) for _, event, _, _, day in accepted))

    @staticmethod
    def _take_keys(session: Session, keys: list[tuple[str, str, str]]) -> set[str]:
        """Insert (event key, contributor, day) rows; the keys this transaction took (not already there)."""
        taken: set[str] = set()
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            values = ", ".join(["(?, ?, ?)"] * len(chunk))
            cursor = session.execute(
                f"INSERT INTO seen_events (event_key, contributor, day) VALUES {values} "  # noqa: S608 - placeholders
                "ON CONFLICT (event_key) DO NOTHING RETURNING event_key",
                [value for row in sorted(chunk) for value in row],
            )
            taken.update(row[0] for row in cursor)
        return taken

    @staticmethod
    def _model_key(event: ModelRegistrationEvent) -> tuple[str, list[Any]]:
        values = [getattr(event, name) for name in MODEL_DIMENSIONS]
        values[MODEL_DIMENSIONS.index("modalities")] = ",".join(sorted(event.modalities))
        return json.dumps(values), values

    def _model_ids(self, session: Session, events: list[ModelRegistrationEvent]) -> list[int]:
        """Each event's model row: looked up together, the missing ones inserted (by this writer or another
        that committed first)."""
        keys = {key: values for key, values in map(self._model_key, events)}
        condition, args = self._one_of("model_key", sorted(keys))
        found = session.execute(f"SELECT model_key, id FROM models WHERE {condition}", args)  # noqa: S608
        ids = {key: int(id_) for key, id_ in found}
        for key in sorted(set(keys) - set(ids)):
            session.execute(
                f"INSERT INTO models (model_key, {', '.join(MODEL_DIMENSIONS)}) "  # noqa: S608 - fixed column names
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model_key) DO NOTHING",
                (key, *keys[key]),
            )
            ids[key] = int(session.execute("SELECT id FROM models WHERE model_key = ?", (key,)).fetchone()[0])
        return [ids[self._model_key(event)[0]] for event in events]

    def model_counts(self) -> list[dict[str, Any]]:
        """Per model: events, distinct contributing installations, failures, first and last day."""
        rows = self._read(
            f"SELECT {', '.join('m.' + name for name in MODEL_DIMENSIONS)}, "  # noqa: S608 - fixed column names
            "SUM(c.events) AS events, COUNT(DISTINCT c.contributor) AS clients, "
            "SUM(c.load_failures) AS load_failures, SUM(c.inference_failures) AS inference_failures, "
            "MIN(c.day) AS first_day, MAX(c.day) AS last_day "
            "FROM models m JOIN contributions c ON c.model_id = m.id GROUP BY m.id "
            "ORDER BY clients DESC, events DESC, m.model_name"
        )
        for model in rows:
            for name in ("events", "clients", "load_failures", "inference_failures"):
                model[name] = int(model[name])
            model["modalities"] = model["modalities"].split(",") if model["modalities"] else []
        return rows

    def delete_client(self, client_id: str, via: str, now: datetime) -> dict[str, int]:
        """Remove every contribution of `client_id`: its hash is computed for each known model name."""
        return self._write(lambda session: self._delete_client(session, client_id, via, now))

    def _delete_client(self, session: Session, client_id: str, via: str, now: datetime) -> dict[str, int]:
        names = [row[0] for row in session.execute("SELECT DISTINCT model_name FROM models")]
        condition, args = self._one_of("contributor", [contributor_hash(name, client_id) for name in names])
        forgotten = self._contribution_counts(session, f"c.{condition}", args)
        contributions = session.execute(f"DELETE FROM contributions WHERE {condition}", args).rowcount  # noqa: S608
        self._add_counts(session, forgotten, -1)  # the counts last, as every writer takes them
        events = session.execute(f"DELETE FROM seen_events WHERE {condition}", args).rowcount  # noqa: S608
        _drop_unused_models(session)
        session.execute(
            "INSERT INTO deletions (requested_at, via, contributions, events) VALUES (?, ?, ?, ?)",
            (iso(now), via, contributions, events),
        )
        return {"contributions": contributions, "events": events}

    def deletion_log(self, limit: int) -> list[dict[str, Any]]:
        """What deletion requests removed; nothing identifies the requester."""
        return self._read(
            "SELECT requested_at, via, contributions, events FROM deletions ORDER BY id DESC LIMIT ?", (limit,)
        )

    # -- retention -----------------------------------------------------------

    def enforce_retention(
        self, uploads_before: datetime, telemetry_before: datetime, seen_before: datetime
    ) -> RetentionResult:
        """Forget uploads received before `uploads_before` (the caller has deleted their
        `expired_archives` first), contributions dated before `telemetry_before`, and re-send keys dated before
        `seen_before` (such events are refused as too old anyway)."""

        def work(session: Session) -> RetentionResult:
            before, telemetry_day = iso(uploads_before), telemetry_before.date().isoformat()
            uploads = self._forget_rows(
                session,
                Scope("u.received_at < ?", [before]),
                lambda: session.execute("DELETE FROM uploads WHERE received_at < ?", (before,)).rowcount,
            )
            self._forget_refusals(session, before)
            forgotten = self._contribution_counts(session, "c.day < ?", [telemetry_day])
            contributions = session.execute("DELETE FROM contributions WHERE day < ?", (telemetry_day,)).rowcount
            self._add_counts(session, forgotten, -1)
            seen = session.execute("DELETE FROM seen_events WHERE day < ?", (seen_before.date().isoformat(),)).rowcount
            _drop_unused_models(session)
            return RetentionResult(uploads, contributions, seen)

        return self._write(work)


def _drop_unused_models(session: Session) -> None:
    session.execute("DELETE FROM models WHERE NOT EXISTS (SELECT 1 FROM contributions c WHERE c.model_id = models.id)")
