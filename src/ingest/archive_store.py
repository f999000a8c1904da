"""Where accepted upload archives are kept: the `ArchiveStore` seam, and the filesystem store.

An archive's name is `YYYY/MM/DD/<request_id>.tar.gz`; the storage indexes it
under that name. An upload is received into a temporary file the store hands
out (`incoming()`), checked, then `publish`ed under its name inside the
index's transaction: a crash in between leaves an archive no committed
upload names, which `recover` removes at the next start. Blocking methods:
call them through a thread.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, assert_never

from lightspeed_common.atomic import ensure_dir, fsync_dir, syncfs
from lightspeed_common.config_ingest import IngestConfig


class ArchiveStore(Protocol):
    def open(self) -> None:
        """Create what the store needs and prove it writable; raises OSError naming the problem."""

    def incoming(self) -> Path:
        """A fresh path, on the store's file system, to receive one upload into."""

    def publish(self, received: Path, name: str) -> None:
        """Move a received archive in place under `name`; durable once this returns."""

    def publish_many(self, received: list[tuple[Path, str]]) -> None:
        """Move several archives in place (received unsynced: they are made durable here, together)."""

    def path(self, name: str) -> Path:
        """Where the archive `name` is read from."""

    def delete(self, names: list[str]) -> None:
        """Delete these archives (those already gone are fine)."""

    def recover(self, known: Callable[[], set[str]], older_than: float) -> int:
        """Remove unfinished receptions and archives no committed upload names, untouched for `older_than`
        seconds (0 when no other node can be receiving); how many. `known` is asked after the files are listed."""


class FilesystemArchiveStore:
    """Archives under `<directory>/archives/`, uploads received into `<directory>/incoming/` (one file system)."""

    def __init__(self, directory: Path) -> None:
        self.archives = directory / "archives"
        self.incoming_dir = directory / "incoming"

    def open(self) -> None:
        for directory in (self.archives, self.incoming_dir):
            ensure_dir(directory)
        probe = self.incoming_dir / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()

    def incoming(self) -> Path:
        return self.incoming_dir / f"{uuid.uuid4().hex}.tmp"

    def publish(self, received: Path, name: str) -> None:
        target = self.archives / name
        ensure_dir(target.parent)
        received.replace(target)
        fsync_dir(target.parent)

    def publish_many(self, received: list[tuple[Path, str]]) -> None:
        if not received:
            return
        syncfs(self.incoming_dir)  # every new file's bytes, at once
        folders = set()
        for path, name in received:
            target = self.archives / name
            path.replace(target)
            folders.add(target.parent)
        for folder in folders:
            fsync_dir(folder)

    def path(self, name: str) -> Path:
        return self.archives / name

    def delete(self, names: list[str]) -> None:
        """Delete the archives, then the day folders they leave empty."""
        folders: set[Path] = set()
        for name in names:
            path = self.archives / name
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            folders.update(parent for parent in path.parents if self.archives in parent.parents)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty, or already gone
                folder.rmdir()

    def recover(self, known: Callable[[], set[str]], older_than: float) -> int:
        # Listed before the index is read: an archive published (and committed) after the listing is
        # not in it, so it cannot be taken for an orphan. Another node's reception in progress is written
        # to at least every body timeout, and its archive is committed right after publishing: both are
        # younger than `older_than`.
        cutoff = time.time() - older_than
        stale = [path for path in self.incoming_dir.iterdir() if _modified_before(path, cutoff)]
        published = [path for path in self.archives.rglob("*") if path.is_file() and _modified_before(path, cutoff)]
        indexed = known() if published else set()
        removed = 0
        for path in stale + [p for p in published if p.relative_to(self.archives).as_posix() not in indexed]:
            with contextlib.suppress(FileNotFoundError):  # another node removed it first
                path.unlink()
                removed += 1
        return removed


def _modified_before(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime <= cutoff
    except FileNotFoundError:
        return False


def archive_store(config: IngestConfig) -> ArchiveStore:
    """The store `ingest.archive.store` names."""
    match config.archive.store:
        case "filesystem":
            return FilesystemArchiveStore(config.archive.directory or config.state_dir)
        case other:
            assert_never(other)
