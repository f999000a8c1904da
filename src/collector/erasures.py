"""The users the server has erased: its notes in `<spool>/erasures/` (DESIGN.md §3, "Erasure"),
one per user, named by the keyed user hash. The records a note covers (`records.Erasure`) are never
shipped: a claimed one is deleted when its batch is packaged (again, for a batch claimed before).
Once the server's part is done, the collector ships one `erasure` record for the note (its own batch,
after the flush's others) and removes the note when the ingress has accepted it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from lightspeed_common.records import ERASURE_FOLDER, RECORD_SUFFIX, Erasure, record_owner_and_time

log = structlog.get_logger("collector")


@dataclass(frozen=True)
class ErasedUsers:
    erasures: dict[str, Erasure]  # user hash -> its erasure

    @classmethod
    def load(cls, folder: Path) -> ErasedUsers:
        """The notes in `folder` (blocking); none when there is no folder. An unreadable note is logged and
        covers every record of the hash its name gives."""
        try:
            paths = [p for p in folder.iterdir() if p.name.endswith(RECORD_SUFFIX) and p.name[0] != "."]
        except FileNotFoundError:
            return cls({})
        found = {}
        for path in paths:
            user_hash = path.name.removesuffix(RECORD_SUFFIX)
            try:
                found[user_hash] = Erasure.parse(json.loads(path.read_bytes()))
            except FileNotFoundError:
                continue  # shipped and removed meanwhile
            except (OSError, ValueError) as exc:
                log.warning("erasure_note_unreadable", file=path.name, error=str(exc))
                found[user_hash] = Erasure(user_hash, None)
        return cls(found)

    def holds(self, member: str, data: bytes) -> bool:
        """Whether the record `member` (`feedback/...`, `transcripts/<hash>/...`) is one an erasure covers."""
        if not self.erasures:
            return False
        kind, _, relpath = member.partition("/")
        if kind == ERASURE_FOLDER:
            return False
        named = kind == "transcripts" and relpath.split("/", 1)[0] in self.erasures
        covered = self._covered(data, lambda record: kind, named)
        return named if covered is None else covered

    def holds_record(self, data: bytes) -> bool:
        """Whether a record found outside a batch's layout (quarantine, sent) is one an erasure covers."""
        covered = self._covered(data, lambda r: "transcripts" if isinstance(r.get("metadata"), dict) else "feedback")
        return bool(covered)

    def _covered(self, data: bytes, folder: Callable[[dict[str, Any]], str], named: bool = False) -> bool | None:
        """Whether an erasure covers the record in `data` (its kind's folder from `folder`); None when it is
        not a JSON object."""
        if not named and not any(user_hash.encode() in data for user_hash in self.erasures):
            return False
        try:
            record = json.loads(data)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        owner, written = record_owner_and_time(folder(record), record)
        erasure = self.erasures.get(owner or "")
        return erasure is not None and erasure.covers(owner, written)

    def to_ship(self) -> list[Erasure]:
        """The erasures whose server part is done: each is shipped as an `erasure` record."""
        return [erasure for _, erasure in sorted(self.erasures.items()) if erasure.erased_at is not None]


def batch_id(erasure: Erasure) -> str:
    """The batch that ships `erasure`: the same for the same note, so a note is never shipped twice
    (a re-sent batch is a duplicate at the ingress), a new one for the same user's next erasure."""
    moment = erasure.erased_at.isoformat() if erasure.erased_at else ""
    return hashlib.sha256(f"erasure\n{erasure.user_hash}\n{moment}".encode()).hexdigest()[:32]


def shipped(folder: Path, members: Iterable[str], records: dict[str, bytes]) -> None:
    """After acceptance: remove the notes these erasure records came from, unless a later erasure of the same
    user rewrote the note meanwhile (blocking)."""
    for member in members:
        kind, _, name = member.partition("/")
        if kind != ERASURE_FOLDER or member not in records:
            continue
        note = folder / name
        try:
            current = Erasure.parse(json.loads(note.read_bytes()))
            sent = Erasure.parse(json.loads(records[member]))
        except (OSError, ValueError):
            continue
        if current == sent:
            note.unlink(missing_ok=True)
            log.info("erasure_shipped", user_hash=sent.user_hash)
