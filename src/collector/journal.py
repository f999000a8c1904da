"""The delivery journal: which batches the ingress accepted.

Append-only JSON lines, fsynced per entry. A `sent` entry is written as soon
as a batch is accepted and before anything is deleted; `done` after the
cleanup. At start, every `sent` without `done` is cleaned up, never
uploaded again. A torn last line (a crash mid-append) is ignored: its batch
then counts as not yet accepted and is uploaded again under the same id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightspeed_common.atomic import append_lines, write_atomic


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: dict[str, Any]) -> None:
        """One entry, durable before this returns."""
        append_lines(self.path, [json.dumps(entry, separators=(",", ":"))], mode=0o640)

    def entries(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "batch_id" in entry:
                entries.append(entry)
        return entries

    def unfinished(self) -> list[dict[str, Any]]:
        """`sent` entries with no `done` after them, oldest first."""
        sent: dict[str, dict[str, Any]] = {}
        for entry in self.entries():
            if entry.get("state") == "sent":
                sent[entry["batch_id"]] = entry
            elif entry.get("state") == "done":
                sent.pop(entry["batch_id"], None)
        return list(sent.values())

    def compact(self, keep: list[dict[str, Any]] | None = None) -> None:
        """Drop finished batches (call when nothing is in flight); `keep`: the unfinished entries, when the
        caller has just read them (the journal holds every accepted batch's member names: megabytes after a
        backlog). An empty journal is left alone (no write, no fsync: every flush of an idle daemon compacts)."""
        try:
            if self.path.stat().st_size == 0:
                return
        except FileNotFoundError:
            return
        if keep is None:
            keep = self.unfinished()
        write_atomic(self.path, "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in keep).encode())
