"""The users the server has erased: its notes in `<spool>/erasures/` (DESIGN.md §3, "Erasure"),
one per user, named by the keyed user hash. Their records are never shipped: a claimed record
of one of them is deleted when its batch is packaged (again, for a batch claimed before)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lightspeed_common.records import RECORD_SUFFIX


@dataclass(frozen=True)
class ErasedUsers:
    hashes: frozenset[str]

    @classmethod
    def load(cls, folder: Path) -> ErasedUsers:
        """The hashes the notes name (blocking); none when there is no folder."""
        try:
            names = [p.name for p in folder.iterdir()]
        except FileNotFoundError:
            return cls(frozenset())
        return cls(frozenset(n.removesuffix(RECORD_SUFFIX) for n in names if n.endswith(RECORD_SUFFIX) and n[0] != "."))

    def holds(self, member: str, data: bytes) -> bool:
        """Whether the record `member` (`feedback/...`, `transcripts/<hash>/...`) is an erased user's."""
        if not self.hashes:
            return False
        kind, _, relpath = member.partition("/")
        if kind == "transcripts" and relpath.split("/", 1)[0] in self.hashes:
            return True
        if not any(user_hash.encode() in data for user_hash in self.hashes):
            return False
        try:
            record = json.loads(data)
        except ValueError:
            return False
        if not isinstance(record, dict):
            return False
        metadata = record.get("metadata")
        owner = metadata.get("user_id") if isinstance(metadata, dict) else record.get("user_id")
        return owner in self.hashes
