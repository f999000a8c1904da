"""Finding finished records, and planning batches from them (pure).

A finished record is a regular `*.json` file whose name does not start with
a dot, below one of the two storage directories, reached without following
a symlink. Temporaries (`.name.json.tmp`) and everything else are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TAR_BLOCK = 512


@dataclass(frozen=True)
class RecordFile:
    kind: str  # "feedback" or "transcripts": the archive's top-level folder
    relpath: str  # below the storage directory, with "/" separators
    size: int

    @property
    def member(self) -> str:
        return f"{self.kind}/{self.relpath}"

    @property
    def tar_bytes(self) -> int:
        """Bytes this record takes in an uncompressed tar: header plus padded content."""
        return TAR_BLOCK + -(-self.size // TAR_BLOCK) * TAR_BLOCK


def is_record_name(name: str) -> bool:
    return name.endswith(".json") and not name.startswith(".")


def _walk(root: Path, prefix: str = "") -> Iterator[tuple[str, int]]:
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_symlink():
            continue
        relpath = f"{prefix}{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            if not entry.name.startswith("."):
                yield from _walk(Path(entry.path), relpath + "/")
        elif entry.is_file(follow_symlinks=False) and is_record_name(entry.name):
            try:
                yield relpath, entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue  # claimed or removed while we looked


def scan(roots: Mapping[str, Path]) -> list[RecordFile]:
    """Every finished record below the roots, oldest name order (blocking)."""
    found = [RecordFile(kind, relpath, size) for kind, root in roots.items() for relpath, size in _walk(root)]
    return sorted(found, key=lambda r: r.member)


def plan_batches(
    files: Sequence[RecordFile], max_files: int, max_bytes: int
) -> tuple[list[list[RecordFile]], list[RecordFile]]:
    """Group records into batches whose uncompressed tar stays within `max_bytes`.

    The compressed upload is never larger than the uncompressed tar (plus a
    few bytes of gzip framing, kept in the margin), so this caps it too.
    Returns the batches and the records too large for any batch.
    """
    limit = max_bytes - 4 * TAR_BLOCK  # end-of-archive blocks and gzip framing
    batches: list[list[RecordFile]] = []
    oversized: list[RecordFile] = []
    current: list[RecordFile] = []
    current_bytes = 0
    for record in files:
        if record.tar_bytes > limit:
            oversized.append(record)
            continue
        if current and (len(current) >= max_files or current_bytes + record.tar_bytes > limit):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(record)
        current_bytes += record.tar_bytes
    if current:
        batches.append(current)
    return batches, oversized
