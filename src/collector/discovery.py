"""Finding finished records, and planning batches from them (pure).

A finished record is a regular `*.json` file whose name does not start with
a dot, below one of the two storage directories, reached without following
a symlink. Temporaries (`.name.json.tmp`) and everything else are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lightspeed_common.records import is_record_name

TAR_BLOCK = 512


@dataclass(frozen=True, slots=True)
class RecordFile:
    kind: str  # the record kind's archive folder (lightspeed_common.records)
    relpath: str  # below the storage directory, with "/" separators
    size: int

    @property
    def member(self) -> str:
        return f"{self.kind}/{self.relpath}"

    @property
    def tar_bytes(self) -> int:
        """Bytes this record takes in an uncompressed tar: header plus padded content."""
        return TAR_BLOCK + -(-self.size // TAR_BLOCK) * TAR_BLOCK


def _walk(root: Path | str, prefix: str = "", sized: bool = True) -> Iterator[tuple[str, int]]:
    """Lazily: records may be claimed (renamed away) while the walk goes on. Without `sized`, every
    size is 0 and no file is stat'ed (the directory entries say what is a file)."""
    try:
        listing = os.scandir(root)
    except FileNotFoundError:
        return
    with listing:
        yield from _entries(listing, prefix, sized)


def _entries(listing: Iterator[os.DirEntry[str]], prefix: str, sized: bool) -> Iterator[tuple[str, int]]:
    for entry in listing:
        if entry.is_symlink():
            continue
        relpath = f"{prefix}{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            if not entry.name.startswith("."):
                yield from _walk(entry.path, relpath + "/", sized)
        elif entry.is_file(follow_symlinks=False) and is_record_name(entry.name):
            try:
                yield relpath, entry.stat(follow_symlinks=False).st_size if sized else 0
            except FileNotFoundError:
                continue  # claimed or removed while we looked


def iter_records(roots: Mapping[str, Path]) -> Iterator[RecordFile]:
    """Every finished record below the roots, as the directories list them (blocking, lazy)."""
    for kind, root in roots.items():
        for relpath, size in _walk(root):
            yield RecordFile(kind, relpath, size)


def count_records(roots: Mapping[str, Path]) -> int:
    """How many finished records are below the roots now (blocking; cheaper than `iter_records`: no stat)."""
    return sum(1 for root in roots.values() for _ in _walk(root, sized=False))


def scan(roots: Mapping[str, Path]) -> list[RecordFile]:
    """Every finished record below the roots, in name order (blocking)."""
    return sorted(iter_records(roots), key=lambda r: r.member)


@dataclass(frozen=True, slots=True)
class Planned:
    records: list[RecordFile]
    oversized: bool = False  # one record too large for any batch


def batches(records: Iterable[RecordFile], max_files: int, max_bytes: int) -> Iterator[Planned]:
    """Group records, as they come, into batches whose uncompressed tar stays within `max_bytes`.

    The compressed upload is never larger than the uncompressed tar (plus a
    few bytes of gzip framing, kept in the margin), so this caps it too. A
    record too large for any batch comes alone, marked oversized. Only one
    batch is held at a time: memory does not grow with the backlog.
    """
    limit = max_bytes - 4 * TAR_BLOCK  # end-of-archive blocks and gzip framing
    current: list[RecordFile] = []
    current_bytes = 0
    for record in records:
        if record.tar_bytes > limit:
            yield Planned([record], oversized=True)
            continue
        if current and (len(current) >= max_files or current_bytes + record.tar_bytes > limit):
            yield Planned(current)
            current, current_bytes = [], 0
        current.append(record)
        current_bytes += record.tar_bytes
    if current:
        yield Planned(current)


def plan_batches(
    files: Sequence[RecordFile], max_files: int, max_bytes: int
) -> tuple[list[list[RecordFile]], list[RecordFile]]:
    """All of `batches` at once: the batches, and the records too large for any."""
    planned = list(batches(files, max_files, max_bytes))
    return [p.records for p in planned if not p.oversized], [p.records[0] for p in planned if p.oversized]
