"""Checking an uploaded archive before anything of it is kept: a gzip tar of JSON records, nothing else.

The archive is read as a stream from its temporary file, never extracted and
never held in memory whole. Refused, with the reason:
- anything but regular files and directories (symlinks, hard links, devices,
  FIFOs), absolute names, `..` components, names outside `feedback/`,
  `transcripts/` and `erasures/`, names not ending in `.json`;
- an erasure record (`erasures/<user hash>.json`) that does not name a user hash and a time;
- a tar bomb: more decompressed bytes than `max_uncompressed_bytes` (headers
  included), more than `max_records` members, one member or header larger
  than `max_record_bytes`;
- a member that is not a JSON object, a truncated or corrupt stream, an
  archive without records.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from ingest.storage import FeedbackInfo, RecordInfo
from lightspeed_common.json_text import parse_json
from lightspeed_common.records import BY_FOLDER, ERASURE_FOLDER, Erasure, record_owner_and_time

KINDS = (*BY_FOLDER, ERASURE_FOLDER)


class ArchiveRejected(Exception):
    """The upload is not an archive this ingest keeps; the message says why (sent to the client)."""


@dataclass(frozen=True)
class Limits:
    max_uncompressed_bytes: int
    max_records: int
    max_record_bytes: int


class _Bounded(io.RawIOBase):
    """The decompressed stream, refusing to go past the byte budget or to read one oversized block."""

    def __init__(self, raw: gzip.GzipFile, limits: Limits) -> None:
        self._raw = raw
        self._limits = limits

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        # tarfile reads a PAX or GNU long-name header in one call: cap it like a record.
        if size < 0 or size > self._limits.max_record_bytes + tarfile.BLOCKSIZE:
            raise ArchiveRejected(f"a tar header or member is larger than {self._limits.max_record_bytes} bytes")
        data = self._raw.read(size)
        self._check_budget()
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        position = self._raw.seek(offset, whence)
        self._check_budget()
        return position

    def tell(self) -> int:
        return self._raw.tell()

    def _check_budget(self) -> None:
        if self._raw.tell() > self._limits.max_uncompressed_bytes:
            raise ArchiveRejected(f"the archive decompresses to more than {self._limits.max_uncompressed_bytes} bytes")


def _safe_parts(name: str) -> list[str]:
    """The name's components under feedback/ or transcripts/, or ArchiveRejected naming the problem."""
    if "\x00" in name or "\\" in name:
        raise ArchiveRejected(f"member {name!r}: unsafe characters in the name")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise ArchiveRejected(f"member {name!r}: absolute path")
    parts = [part for part in path.parts if part != "."]
    if ".." in parts:
        raise ArchiveRejected(f"member {name!r}: '..' in the path")
    if not parts or parts[0] not in KINDS:
        raise ArchiveRejected(f"member {name!r}: records must be under feedback/, transcripts/ or erasures/")
    return parts


def member_kind(name: str) -> str:
    """The record kind from a regular file's member name, or ArchiveRejected."""
    parts = _safe_parts(name)
    if len(parts) < 2 or not parts[-1].endswith(".json") or parts[-1].startswith("."):
        raise ArchiveRejected(f"member {name!r}: not a .json record")
    return parts[0]


def _record_info(name: str, kind: str, data: bytes) -> RecordInfo:
    try:
        record = parse_json(data)
    except (ValueError, UnicodeDecodeError):
        raise ArchiveRejected(f"member {name!r}: not valid JSON") from None
    if not isinstance(record, dict):
        raise ArchiveRejected(f"member {name!r}: not a JSON object")
    if kind == ERASURE_FOLDER:
        try:
            erasure = Erasure.parse(record)
        except ValueError as exc:
            raise ArchiveRejected(f"member {name!r}: {exc}") from None
        if erasure.erased_at is None:
            raise ArchiveRejected(f"member {name!r}: an erasure record's erased_at is an ISO 8601 time")
        sha256 = hashlib.sha256(data).hexdigest()
        return RecordInfo(name, kind, sha256, None, erasure.erased_at.isoformat(), erasure.user_hash)
    fields = BY_FOLDER[kind].identity_fields(record)
    conversation = fields.get("conversation_id")
    timestamp = fields.get("timestamp")
    owner, written = record_owner_and_time(kind, record)
    return RecordInfo(
        member=name,
        kind=kind,
        content_sha256=hashlib.sha256(data).hexdigest(),
        conversation_id=conversation if isinstance(conversation, str) else None,
        timestamp=timestamp if isinstance(timestamp, str) else None,
        user_hash=owner,
        feedback=_feedback_info(record, written, data) if kind == "feedback" else None,
        model=_model(fields) if kind == "transcripts" else None,
    )


def _model(metadata: Mapping[str, Any]) -> str | None:
    """`provider/model` of the transcript's answer, when the record names both."""
    provider, model = metadata.get("provider"), metadata.get("model")
    if isinstance(provider, str) and isinstance(model, str) and provider and model:
        return f"{provider}/{model}"[:200]
    return None


def _feedback_info(record: dict[str, Any], written: datetime | None, data: bytes) -> FeedbackInfo:
    sentiment, categories, text = record.get("sentiment"), record.get("categories"), record.get("user_feedback")
    at = written.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if written else ""
    return FeedbackInfo(
        at=at,
        sentiment=sentiment if isinstance(sentiment, int) and not isinstance(sentiment, bool) else None,
        categories=tuple(sorted({c for c in categories if isinstance(c, str)})) if isinstance(categories, list) else (),
        user_feedback=text if isinstance(text, str) else None,
        record=data.decode(),
    )


def inspect_archive(path: Path, limits: Limits) -> list[RecordInfo]:
    """Every record in the archive at `path`, or ArchiveRejected. Blocking."""
    records: list[RecordInfo] = []
    try:
        with gzip.open(path, "rb") as raw, tarfile.open(fileobj=_Bounded(raw, limits), mode="r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > limits.max_records:
                    raise ArchiveRejected(f"more than {limits.max_records} members in one archive")
                if member.isdir():
                    _safe_parts(member.name)
                    continue
                if not member.isreg():
                    raise ArchiveRejected(
                        f"member {member.name!r}: only regular files are accepted, not links or devices"
                    )
                kind = member_kind(member.name)
                if member.size > limits.max_record_bytes:
                    raise ArchiveRejected(f"member {member.name!r}: larger than {limits.max_record_bytes} bytes")
                extracted = tar.extractfile(member)
                assert extracted is not None
                records.append(_record_info(member.name, kind, extracted.read()))
    except ArchiveRejected:
        raise
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise ArchiveRejected(f"not a readable tar.gz archive: {exc}") from None
    if not records:
        raise ArchiveRejected("the archive holds no records")
    return records
