"""The on-disk contract: the kinds of record, where each lives, how its files are named.

The server writes records, the collector ships them, the ingest indexes
them; all three read this one table. Adding a kind means a row here, its
format in the server (`lightspeed.records.formats`) and a directory key in
the config (`user_data_collection.<storage_key>`).

Each record is one JSON file `<uuid4>.json`, written atomically (a temporary
`.<uuid4>.json.<pid>.tmp` beside it, renamed into place), in the folders its
kind's `directories` name below its storage directory: `RecordKind.path` is
the one place a record's path is made (the server's writer calls it). In an
upload archive it sits under `<folder>/` with the same relative path. The
layouts and field names are lightspeed-stack's, so its downstream pipeline
reads ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from lightspeed_common.config import AppConfig

KindName = Literal["feedback", "transcript"]
RECORD_SUFFIX = ".json"
_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RecordKind:
    name: KindName  # in logs, metrics and errors
    storage_key: str  # the directory: `user_data_collection.<storage_key>`
    folder: str  # the top-level folder in an upload archive, and the kind the ingest indexes
    # The identity fields whose values name the folders between the storage directory and the file, in order.
    directories: tuple[str, ...]
    fields_under: str | None  # the object holding user_id, conversation_id and timestamp (None: the top level)

    @property
    def depth(self) -> int:
        """Folders between the storage directory and the file."""
        return len(self.directories)

    @property
    def layout(self) -> str:
        """The path below the storage directory, for people: `<user_id>/<conversation_id>/<uuid4>.json`."""
        return "/".join([*(f"<{name}>" for name in self.directories), f"<uuid4>{RECORD_SUFFIX}"])

    def identity_fields(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        """The object of a parsed record that holds its user, conversation and timestamp."""
        source = record.get(self.fields_under) if self.fields_under else record
        return source if isinstance(source, Mapping) else {}

    def path(self, root: Path, record: Mapping[str, Any], file_id: str) -> Path:
        """Where `record` lives below its storage directory `root`: `file_id` + .json, in the folders
        its identity fields name. ValueError for a value that is not one plain path component."""
        identity = self.identity_fields(record)
        folders = [str(identity.get(name, "")) for name in self.directories]
        for part in (*folders, file_id):
            if part in ("", ".", "..") or "/" in part or "\0" in part:
                raise ValueError(f"{self.name} record: {part!r} cannot name a folder or file")
        return root.joinpath(*folders, f"{file_id}{RECORD_SUFFIX}")

    def storage(self, config: AppConfig) -> Path | None:
        path: Path | None = getattr(config.user_data_collection, self.storage_key)
        return path


FEEDBACK = RecordKind(
    name="feedback",
    storage_key="feedback_storage",
    folder="feedback",
    directories=(),
    fields_under=None,
)
TRANSCRIPT = RecordKind(
    name="transcript",
    storage_key="transcripts_storage",
    folder="transcripts",
    directories=("user_id", "conversation_id"),  # user_id holds the user's hash, never the id itself
    fields_under="metadata",
)
RECORD_KINDS: tuple[RecordKind, ...] = (FEEDBACK, TRANSCRIPT)
BY_FOLDER = {kind.folder: kind for kind in RECORD_KINDS}


def storage_roots(config: AppConfig) -> dict[str, Path]:
    """The configured storage directories, by archive folder (the collector's and the ingest's key)."""
    roots = {kind.folder: kind.storage(config) for kind in RECORD_KINDS}
    return {folder: path for folder, path in roots.items() if path is not None}


def spool_dir(config: AppConfig) -> Path:
    """The collector's spool: `collector.spool_dir`, else `spool` beside the first storage directory."""
    if config.collector.spool_dir is not None:
        return config.collector.spool_dir
    first = next(iter(storage_roots(config).values()), config.service.state_dir)
    return first.parent / "spool"


def erasure_notes_dir(config: AppConfig) -> Path:
    """Where the server leaves erasure notes for the collector (DESIGN.md §3, "Erasure")."""
    return spool_dir(config) / "erasures"


def prune_folders(root: Path | str, relpaths: Iterable[str]) -> None:
    """Remove the folders below `root` that deleting or moving away the records at `relpaths`
    (`<user>/<conversation>/<uuid>.json`, ...) may have emptied, deepest first; never `root` itself, never a
    folder that still holds something (a record may have arrived meanwhile). Blocking."""
    folders: set[str] = set()
    for relpath in relpaths:
        parts = relpath.split("/")[:-1]
        folders.update(f"{root}/{'/'.join(parts[:depth])}" for depth in range(1, len(parts) + 1))
    for folder in sorted(folders, key=lambda f: f.count("/"), reverse=True):
        with contextlib.suppress(OSError):  # not empty, or already gone
            os.rmdir(folder)  # noqa: PTH106 - plain str paths, many of them


def is_record_name(name: str) -> bool:
    """A finished record's file name (temporaries start with a dot)."""
    return name.endswith(RECORD_SUFFIX) and not name.startswith(".")


# -- erasure (DESIGN.md §3, "Erasure") -------------------------------------------------------------

ERASURE_FOLDER = "erasures"  # the folder of erasure records in an upload archive, and of the server's notes
ERASURE_KIND = "erasure"


def parse_time(value: object) -> datetime | None:
    """A record's timestamp as an aware datetime (naive ones are UTC); None when it has none or it is unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def record_owner_and_time(folder: str, record: Mapping[str, Any]) -> tuple[str | None, datetime | None]:
    """The keyed user hash a parsed record belongs to, and when it was written (None when it does not say)."""
    if folder == ERASURE_FOLDER:  # an erasure record names its user too (the ingest erases it with the rest)
        owner = record.get("user_id")
        return (owner if isinstance(owner, str) else None), parse_time(record.get("erased_at"))
    kind = BY_FOLDER.get(folder)
    if kind is None:
        return None, None
    fields = kind.identity_fields(record)
    owner = fields.get("user_id")
    return (owner if isinstance(owner, str) else None), parse_time(fields.get("timestamp"))


@dataclass(frozen=True)
class Erasure:
    """One user's erasure: every record of `user_hash` written up to `erased_at` goes, everywhere.

    `erased_at` None: the server's part is still running, so every record of the user is covered. A record
    written after the erasure (the user came back) is not covered; one without a readable timestamp is.
    """

    user_hash: str
    erased_at: datetime | None

    def covers(self, owner: str | None, written: datetime | None) -> bool:
        if owner != self.user_hash:
            return False
        return self.erased_at is None or written is None or written <= self.erased_at

    def member(self) -> str:
        """Its archive member name: `erasures/<user_hash>.json`."""
        return f"{ERASURE_FOLDER}/{self.user_hash}{RECORD_SUFFIX}"

    def record(self) -> bytes:
        """The erasure record the collector ships: the hash and the time, no content."""
        erased_at = self.erased_at.isoformat() if self.erased_at is not None else None
        return json.dumps({"kind": ERASURE_KIND, "user_id": self.user_hash, "erased_at": erased_at}).encode()

    @classmethod
    def parse(cls, record: object) -> Erasure:
        """An erasure record (or a server's note, `server_done` and all), or ValueError saying what is wrong."""
        if not isinstance(record, Mapping):
            raise ValueError("an erasure record is a JSON object")
        user_hash = record.get("user_id", record.get("user_hash"))
        if not isinstance(user_hash, str) or not _HASH.fullmatch(user_hash):
            raise ValueError("an erasure record's user_id is a keyed user hash (64 hexadecimal digits)")
        erased_at = parse_time(record.get("erased_at"))
        if record.get("server_done") is False:
            erased_at = None
        elif erased_at is None:
            raise ValueError("an erasure record's erased_at is an ISO 8601 time")
        return cls(user_hash, erased_at)
