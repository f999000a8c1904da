"""The on-disk contract: the kinds of record, where each lives, how its files are named.

The server writes records, the collector ships them, the ingest indexes
them; all three read this one table. Adding a kind means a row here, its
format in the server (`lightspeed.records.formats`) and a directory key in
the config (`user_data_collection.<storage_key>`).

Each record is one JSON file `<uuid4>.json`, written atomically (a temporary
`.<uuid4>.json.tmp` beside it, renamed into place), `depth` folders below
its storage directory. In an upload archive it sits under `<folder>/` with
the same relative path. The layouts and field names are lightspeed-stack's,
so its downstream pipeline reads ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lightspeed_common.config import AppConfig

KindName = Literal["feedback", "transcript"]
RECORD_SUFFIX = ".json"


@dataclass(frozen=True)
class RecordKind:
    name: KindName  # in logs, metrics and errors
    storage_key: str  # the directory: `user_data_collection.<storage_key>`
    folder: str  # the top-level folder in an upload archive, and the kind the ingest indexes
    depth: int  # folders between the storage directory and the file
    layout: str  # the path below the storage directory, for people
    fields_under: str | None  # the object holding user_id, conversation_id and timestamp (None: the top level)
    format_version: int  # of the JSON layout; the files carry none (lightspeed-stack's format), bump on a change

    def identity_fields(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        """The object of a parsed record that holds its user, conversation and timestamp."""
        source = record.get(self.fields_under) if self.fields_under else record
        return source if isinstance(source, Mapping) else {}

    def storage(self, config: AppConfig) -> Path | None:
        path: Path | None = getattr(config.user_data_collection, self.storage_key)
        return path


FEEDBACK = RecordKind(
    name="feedback",
    storage_key="feedback_storage",
    folder="feedback",
    depth=0,
    layout="<uuid4>.json",
    fields_under=None,
    format_version=1,
)
TRANSCRIPT = RecordKind(
    name="transcript",
    storage_key="transcripts_storage",
    folder="transcripts",
    depth=2,
    layout="<user_hash>/<conversation_id>/<uuid4>.json",
    fields_under="metadata",
    format_version=1,
)
RECORD_KINDS: tuple[RecordKind, ...] = (FEEDBACK, TRANSCRIPT)
BY_FOLDER = {kind.folder: kind for kind in RECORD_KINDS}


def storage_roots(config: AppConfig) -> dict[str, Path]:
    """The configured storage directories, by archive folder (the collector's and the ingest's key)."""
    roots = {kind.folder: kind.storage(config) for kind in RECORD_KINDS}
    return {folder: path for folder, path in roots.items() if path is not None}


def is_record_name(name: str) -> bool:
    """A finished record's file name (temporaries start with a dot)."""
    return name.endswith(RECORD_SUFFIX) and not name.startswith(".")
