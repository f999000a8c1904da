"""What lightspeed-ingest keeps, behind one protocol (`Storage`), and how asyncio drives it (`Database`).

All SQL lives in the implementations (`sqlite_storage.SQLiteStorage`, the
default, and `postgres_storage.PostgresStorage`, for several nodes), so the
handlers never see SQL. Implementations translate their driver's errors into
`StorageFailure` and its kinds: no handler sees a driver's exception. A
database that cannot be reached (`StorageUnavailable`) is answered 503 with
Retry-After by `Database.run` (the foundation's `sql.DatabaseThreads`, as the
server's store), and the readiness probe says why.

What is stored, and what is not:
- uploads: request id, time, service/category, the archive's file name, size
  and SHA-256, and record counts; records: the SHA-256 of each record's bytes
  (de-duplication), its kind, conversation id and timestamp.
- telemetry: per model (name, source, dimension, metric, normalization,
  modalities, device type) and per contributor and day, an event count.
  A contributor is `sha256(model_name + "\\n" + client_id)`, as the spec
  suggests: client ids are never stored, addresses never reach this module.
  `seen_events` holds a hash of (client id, model name, timestamp) for the
  at-least-once client's re-sends, for as long as such an event is accepted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from lightspeed_common.sql import DatabaseThreads, DatabaseUnavailable
from lightspeed_common.telemetry_schema import ModelRegistrationEvent

MODEL_DIMENSIONS = (
    "model_name",
    "model_source",
    "embedding_dimension",
    "distance_metric",
    "normalization",
    "modalities",
    "device_type",
)


def contributor_hash(model_name: str, client_id: str) -> str:
    """The spec's server-side de-duplication key: model name and client id hashed together."""
    return hashlib.sha256(f"{model_name}\n{client_id}".encode()).hexdigest()


def event_key(event: ModelRegistrationEvent) -> str:
    return hashlib.sha256(f"{event.client_id}\n{event.model_name}\n{event.timestamp}".encode()).hexdigest()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class DailyLimits:
    """How many events of a model's day may be counted: all together, per installation (contributor), and
    what the sender may still add per model name today (its source address's share; absent: no limit)."""

    per_model: int
    per_contributor: int
    left_for_sender: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FeedbackInfo:
    """What the feedback browser and export need of a feedback record (issue 27), kept beside the index."""

    at: str  # the record's timestamp, ISO 8601 UTC (`...Z`), or "" when it has none readable
    sentiment: int | None
    categories: tuple[str, ...]
    user_feedback: str | None
    record: str  # the record as received, JSON text


@dataclass(frozen=True)
class FeedbackFilter:
    """Which feedback the browser and the export show: each field None means any."""

    since: str | None = None  # a day, YYYY-MM-DD, inclusive
    until: str | None = None
    sentiment: int | None = None
    category: str | None = None
    text: str | None = None  # found in user_feedback, whatever its case


@dataclass(frozen=True)
class RecordInfo:
    """One record of an archive, as indexed."""

    member: str
    kind: str
    content_sha256: str
    conversation_id: str | None
    timestamp: str | None  # an erasure record's: its erased_at
    user_hash: str | None = None  # the keyed user hash the record belongs to (an erasure record's: the erased)
    feedback: FeedbackInfo | None = None  # a feedback record's browsable fields
    model: str | None = None  # a transcript's `provider/model` (the insights' feedback by model)


@dataclass(frozen=True)
class Rewrite:
    """An upload's archive after an erasure went through it: how many records it lost, the SHA-256 of each
    record it keeps (none: the archive was deleted, or was already gone), its size and SHA-256, and the
    users whose records it still holds."""

    removed: int
    kept: list[str]
    size: int = 0
    sha256: str = ""
    owners: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PendingErasure:
    id: int
    user_hash: str
    erased_at: str


@dataclass(frozen=True)
class UploadInfo:
    request_id: str
    received_at: datetime
    service: str
    category: str
    archive: str
    size: int
    sha256: str


@dataclass(frozen=True)
class StoredUpload:
    request_id: str
    records: int
    new_records: int
    duplicate_records: int
    duplicate_request: bool = False


@dataclass(frozen=True)
class RetentionResult:
    uploads: int
    contributions: int
    seen_events: int


class StorageFailure(Exception):
    """The database failed (unreachable, corrupt, a newer schema); the message says how."""


class StorageUnavailable(StorageFailure, DatabaseUnavailable):
    """The database cannot be reached now (down, restarting, the network); a later try may work."""


class DuplicateUpload(StorageFailure):
    """An upload with this request id is already stored (two arrived at once; the other one won)."""


class Storage(Protocol):
    """What the handlers need from a backend."""

    # How many calls may run at once (one thread each); 1 for SQLite, the pool's size for PostgreSQL.
    threads: int
    # Other nodes may write the same database and archive directory (so recovery spares fresh archives).
    shared: bool

    def check(self) -> None:
        """One round trip: StorageUnavailable when the database cannot be reached."""

    def find_upload(self, request_id: str) -> StoredUpload | None: ...
    def add_upload(
        self, upload: UploadInfo, records: list[RecordInfo], publish: Callable[[], None]
    ) -> StoredUpload: ...
    def known_archives(self) -> set[str]: ...
    def recent_uploads(self, limit: int) -> list[dict[str, Any]]: ...
    def upload_totals(self) -> dict[str, int]: ...
    def add_events(self, events: list[ModelRegistrationEvent], limits: DailyLimits) -> list[str]: ...
    def known_contributors(self, contributors: list[str]) -> set[str]: ...
    def model_counts(self) -> list[dict[str, Any]]: ...
    def delete_client(self, client_id: str, via: str, now: datetime) -> dict[str, int]: ...
    def deletion_log(self, limit: int) -> list[dict[str, Any]]: ...
    def expired_archives(self, before: datetime) -> list[str]: ...
    def enforce_retention(
        self, uploads_before: datetime, telemetry_before: datetime, seen_before: datetime
    ) -> RetentionResult: ...
    def request_erasure(self, user_hash: str, erased_at: datetime, via: str, now: datetime) -> None: ...
    def pending_erasures(self) -> list[PendingErasure]: ...
    def erasure_uploads(self, user_hash: str) -> list[tuple[str, str]]: ...
    def erasure_rewritten(self, rewrites: list[tuple[str, Rewrite]]) -> None: ...
    def finish_erasure(self, erasure_id: int, counts: dict[str, int], now: datetime) -> None: ...
    def erasure_log(self, limit: int) -> list[dict[str, Any]]: ...
    def feedback_page(
        self, where: FeedbackFilter, limit: int, after: tuple[str, str] | None
    ) -> list[dict[str, Any]]: ...
    def with_transcripts(self, conversation_ids: list[str]) -> set[str]: ...
    def transcript_members(self, conversation_id: str) -> list[tuple[str, str]]: ...
    def add_refusal(self, at: str, request_id: str, outcome: str, size: int | None, reason: str) -> None: ...
    def recent_refusals(self, since: str, before: str, limit: int) -> list[dict[str, Any]]: ...
    def daily_counts(
        self, since: str, until: str, series: tuple[str, ...] = ...
    ) -> list[tuple[str, str, str, int]]: ...
    def rebuild_insights(self, only_if_unbuilt: bool = False) -> bool: ...
    def insights_built(self) -> bool: ...
    def close(self) -> None: ...


class Database(DatabaseThreads):
    """A backend driven from asyncio (`lightspeed_common.sql.DatabaseThreads`: one thread for SQLite)."""

    def __init__(self, storage: Storage) -> None:
        super().__init__(storage.threads, "ingest-db")
        self.storage = storage

    async def close(self, closing: Callable[[], None] | None = None) -> None:
        await super().close(closing or self.storage.close)
