"""What lightspeed-ingest keeps, behind one protocol (`Storage`), and how asyncio drives it (`Database`).

All SQL lives in the implementations (`sqlite_storage.SQLiteStorage`, the
default, and `postgres_storage.PostgresStorage`, for several nodes), so the
handlers never see SQL. Implementations translate their driver's errors into
`StorageFailure` and its kinds: no handler sees a driver's exception. A
database that cannot be reached (`StorageUnavailable`) is answered 503 with
Retry-After by `Database.run`, and the readiness probe says why.

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

import asyncio
import functools
import hashlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec, Protocol, TypeVar

from lightspeed_common.errors import ServiceUnavailable
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
class RecordInfo:
    """One record of an archive, as indexed."""

    member: str
    kind: str
    content_sha256: str
    conversation_id: str | None
    timestamp: str | None


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


class StorageUnavailable(StorageFailure):
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
    def close(self) -> None: ...


T = TypeVar("T")
P = ParamSpec("P")


UNAVAILABLE_RETRY_AFTER = "5"  # seconds; a restarting database is usually back within a few


class Database:
    """A backend driven from asyncio: calls run on the backend's threads (one for SQLite: in order)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._thread = ThreadPoolExecutor(max_workers=storage.threads, thread_name_prefix="ingest-db")

    async def run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`call` on a database thread; an unreachable database is ServiceUnavailable (503, Retry-After)."""
        try:
            return await self.call(call, *args, **kwargs)
        except StorageUnavailable as exc:
            raise ServiceUnavailable(
                "Database unavailable", f"{exc}; try again later", headers={"Retry-After": UNAVAILABLE_RETRY_AFTER}
            ) from None

    async def call(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`call` on a database thread, its exceptions unchanged."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, functools.partial(call, *args, **kwargs))

    async def close(self) -> None:
        await self.call(self.storage.close)
        self._thread.shutdown(wait=True)
