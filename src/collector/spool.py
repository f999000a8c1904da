"""The spool: claimed batches, their archives, what was sent and what was refused.

    spool/claimed/<batch_id>/manifest                     the batch's records, left where the server wrote them
    spool/claimed/<batch_id>/{feedback,transcripts,erasures}/...   records moved into the batch itself
    spool/outbox/<batch_id>.tar.gz                        the archive being uploaded
    spool/sent/<batch_id>/...                             kept records (cleanup_after_send: false)
    spool/quarantine/<name>/                              refused or unusable records, with reason.json
    spool/journal                                         see journal.py
    spool/status.json                                     the last flush's outcome, for `status`
    spool/erasures/<user_hash>.json                       the server's erasure notes (erasures.py)

A batch is claimed by writing its manifest: one durable file, not a rename
per record (renaming 100,000 files costs as much as reading and deleting
them). Its records stay in the storage folders until the ingress has
accepted them; the collector's walk passes over them (`Delivery`), and
whatever the server deletes meanwhile (an erasure, retention) is simply not
packaged. Records are moved into the batch's own folder only where one
must live in exactly one place: a split batch's halves, an erasure record,
and batches claimed by renaming (before manifests). A record that must be
kept (sent/, quarantine/) is moved there with its member path. All of it
lives on the storage directories' file system, so those moves are renames.
Blocking: call through a thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from collector.discovery import RecordFile
from collector.erasures import shipped
from collector.tarstream import TarGzWriter
from lightspeed_common.atomic import ensure_dir, fsync_dir, syncfs, write_atomic
from lightspeed_common.config import AppConfig
from lightspeed_common.records import (
    ERASURE_FOLDER,
    Erasure,
    is_record_name,
    prune_folders,
    spool_dir,
    storage_roots,
)

STATUS_FILE = "status.json"
MANIFEST = "manifest"  # not a record name: never taken for one of the batch's files
# Threads renaming a batch in or deleting it: that is kernel work, and the smallest hosts have two cores.
FILE_THREADS = 2
T = TypeVar("T")
R = TypeVar("R")
# Why a claimed file cannot be shipped (it goes to quarantine), or None.
Problem = Callable[[bytes], str | None]
# Whether a claimed record (member name, bytes) is an erased user's: deleted, never shipped.
Erased = Callable[[str, bytes], bool]


@dataclass(frozen=True)
class Package:
    batch_id: str
    path: Path
    members: list[str]
    size: int


def read_record(path: str) -> bytes:
    """A record file's bytes in four system calls (open, fstat, read, close), where a Python file object
    makes eight (it also asks whether the file is a terminal, seeks, and reads once more to find the end).
    A record is complete once it is in place (written atomically, never changed): its size is final."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        chunks, got = [], 0
        while got < size and (chunk := os.read(fd, size - got)):
            chunks.append(chunk)
            got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def _in_shares(work: Callable[[list[T]], R], groups: list[list[T]], threads: int = FILE_THREADS) -> list[R]:
    """`work` over `groups` (each one folder's files), dealt into `threads` shares run at once: renames and
    unlinks in different folders proceed together in the kernel, where one thread waits on each in turn."""
    shares: list[list[T]] = [[] for _ in range(threads)]
    for group in sorted(groups, key=len, reverse=True):  # the largest folders first, each to the lightest share
        min(shares, key=len).extend(group)
    shares = [share for share in shares if share]
    if len(shares) < 2:
        return [work(share) for share in shares]
    with ThreadPoolExecutor(len(shares), thread_name_prefix="spool-files") as pool:
        return list(pool.map(work, shares))


def _rename_all(moves: list[tuple[str, str]]) -> None:
    """(source, destination) renamed; a source that vanished meanwhile is skipped."""
    for source, destination in moves:
        with contextlib.suppress(FileNotFoundError):
            os.rename(source, destination)  # noqa: PTH104 - hot loop, plain str paths


def _unlink_all(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # noqa: PTH108 - hot loop, plain str paths


def _by_folder(paths: Iterable[str]) -> list[list[str]]:
    folders: dict[str, list[str]] = {}
    for path in paths:
        folders.setdefault(path.rpartition("/")[0], []).append(path)
    return list(folders.values())


def remove_files(paths: Iterable[str]) -> None:
    """Unlink files, a folder's at a time on each thread (one already gone is fine)."""
    _in_shares(_unlink_all, _by_folder(paths))


def move_files(sources: Mapping[str, str], target: Path) -> None:
    """Move each member's file (member -> path) to `<target>/<member>`, making the folders; not durable
    until a syncfs."""
    moves: dict[str, list[tuple[str, str]]] = {}
    for member, path in sources.items():
        destination = f"{target}/{member}"
        moves.setdefault(destination.rpartition("/")[0], []).append((path, destination))
    for folder in moves:
        os.makedirs(folder, exist_ok=True)  # noqa: PTH103 - many folders, plain str paths
    _in_shares(_rename_all, list(moves.values()))


class Spool:
    def __init__(self, root: Path, roots: Mapping[str, Path]) -> None:
        self.root = root
        self.roots = dict(roots)  # kind -> storage directory
        self.claimed = root / "claimed"
        self.outbox = root / "outbox"
        self.sent = root / "sent"
        self.quarantine_dir = root / "quarantine"
        self.journal_path = root / "journal"
        self.status_path = root / STATUS_FILE

    @classmethod
    def for_config(cls, config: AppConfig) -> Spool:
        return cls(spool_dir(config), storage_roots(config))

    def prepare(self) -> None:
        for directory in (self.claimed, self.outbox, self.sent, self.quarantine_dir):
            ensure_dir(directory)

    def pending(self) -> list[str]:
        """Batch ids claimed and not yet finished, oldest first."""
        if not self.claimed.is_dir():
            return []  # nothing has run yet
        entries = sorted(self.claimed.iterdir(), key=lambda p: p.stat().st_mtime)
        return [p.name for p in entries if p.is_dir()]

    def claim(self, batch_id: str, records: Iterable[RecordFile]) -> dict[str, str]:
        """Claim records for claimed/<batch_id> by writing its manifest, durably; the records stay where they
        are. Returns each member's file (member -> path)."""
        sources = {record.member: f"{self.roots[record.kind]}/{record.relpath}" for record in records}
        roots = {kind: str(root) for kind, root in self.roots.items()}
        target = self.claimed / batch_id
        ensure_dir(target)
        write_atomic(target / MANIFEST, json.dumps({"roots": roots, "members": list(sources)}).encode())
        return sources

    def sources(self, batch_id: str) -> dict[str, str]:
        """The batch's records, member -> file, in member order: those its manifest lists (where the
        storage directories it names hold them), and those moved into its folder."""
        found = {}
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
            # Written atomically, so never torn; one that cannot be read claims nothing: its records are
            # still in the storage folders, and the next walk claims them again.
            manifest = json.loads((self.claimed / batch_id / MANIFEST).read_bytes())
            roots = manifest["roots"]
            for member in manifest["members"]:
                kind, _, relpath = member.partition("/")
                if kind in roots:
                    found[member] = f"{roots[kind]}/{relpath}"
        base = self.claimed / batch_id
        found.update((member, f"{base}/{member}") for member in self.moved_in(batch_id))
        return dict(sorted(found.items()))

    def members(self, batch_id: str) -> list[str]:
        """The batch's records, as archive member names."""
        return list(self.sources(batch_id))

    def moved_in(self, batch_id: str) -> list[str]:
        """The members whose files are in the batch's own folder (no symlinks, no dot-files)."""
        base = str(self.claimed / batch_id)
        found = []
        for folder, _, files in os.walk(base):
            prefix = os.path.relpath(folder, base)
            for name in files:
                if is_record_name(name) and not os.path.islink(f"{folder}/{name}"):  # noqa: PTH114
                    found.append(name if prefix == "." else f"{prefix}/{name}")
        return sorted(found)

    def package(
        self,
        batch_id: str,
        problem: Problem = lambda data: None,
        erased: Erased = lambda member, data: False,
        sources: Mapping[str, str] | None = None,
    ) -> Package | None:
        """Stream the batch's records into outbox/<batch_id>.tar.gz (None if nothing is left).

        Members are `<kind folder>/...` (`feedback/...`, `transcripts/...`), bytes
        identical to the files: `sources`, what `claim` just listed, or else the
        batch's (`sources()`). A file gone meanwhile (the server erased it, or a
        split moved it) is skipped; files `problem` finds fault with are
        quarantined instead; an erased user's records are deleted.
        """
        base = self.claimed / batch_id
        final = self.outbox / f"{batch_id}.tar.gz"
        tmp = self.outbox / f".{batch_id}.tar.gz.tmp"
        members = []
        now = int(time.time())
        # Each file is read once: checked as JSON, then written from the same bytes.
        with tmp.open("wb") as out, TarGzWriter(out, mtime=now) as archive:
            for member, path in sorted((self.sources(batch_id) if sources is None else sources).items()):
                try:
                    data = read_record(path)
                except FileNotFoundError:
                    continue
                if erased(member, data):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)  # noqa: PTH108 - hot loop, plain str paths
                    continue
                if (reason := problem(data)) is not None:
                    self._quarantine_file(batch_id, member, path, reason)
                    continue
                archive.add(member, data)
                members.append(member)
        if not members:
            tmp.unlink()
            final.unlink(missing_ok=True)  # packaged before, when it still held records
            shutil.rmtree(base, ignore_errors=True)
            return None
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(final)
        fsync_dir(self.outbox)
        return Package(batch_id, final, members, final.stat().st_size)

    def claim_erasure(self, batch_id: str, erasure: Erasure) -> bool:
        """Make the batch that ships `erasure`'s record, unless it exists already (claimed, sent or
        quarantined); whether it was made."""
        if any((folder / batch_id).exists() for folder in (self.claimed, self.sent, self.quarantine_dir)):
            return False
        target = self.claimed / batch_id / erasure.member()
        ensure_dir(target.parent)
        write_atomic(target, erasure.record())
        return True

    def finish(self, batch_id: str, keep: bool, members: Iterable[str] = ()) -> None:
        """After acceptance: delete the batch's accepted records (or keep them under sent/), the batch, the
        folders it emptied, and the erasure notes whose records it carried. Idempotent: recovery runs it
        again after a crash part-way."""
        base = self.claimed / batch_id
        members = list(members)
        sources = self.sources(batch_id) if base.exists() else {}  # gone: finished up to its removal
        accepted = {member: sources[member] for member in members if member in sources}
        erasure_records = {}
        for member, path in accepted.items():
            if member.startswith(f"{ERASURE_FOLDER}/"):
                with contextlib.suppress(FileNotFoundError):
                    erasure_records[member] = Path(path).read_bytes()
        if keep and not erasure_records:  # an erasure record is not kept: it names the user
            move_files(accepted, self.sent / batch_id)
        else:
            remove_files(accepted.values())
        if base.exists():
            # The records are gone from it first: a crash here leaves a batch that claims nothing.
            syncfs(self.root)
            shutil.rmtree(base)  # the manifest, folders now empty, and anything that was never a member
        (self.outbox / f"{batch_id}.tar.gz").unlink(missing_ok=True)
        self.prune_sources(members)
        shipped(self.root / ERASURE_FOLDER, members, erasure_records)
        # Durable before the journal says `done`: a crash must never bring accepted files back.
        syncfs(self.root)

    def prune_sources(self, members: Iterable[str]) -> None:
        """Remove user/conversation folders the batch emptied; never a storage directory itself."""
        by_kind: dict[str, list[str]] = {}
        for member in members:
            kind, _, relpath = member.partition("/")
            by_kind.setdefault(kind, []).append(relpath)
        for kind, relpaths in by_kind.items():
            if kind in self.roots:
                prune_folders(self.roots[kind], relpaths)

    def quarantine(self, batch_id: str, reason: dict[str, Any]) -> Path:
        """Move a refused batch's records (to `records/<member>`), its archive and the reason out of the way.
        Nothing is deleted."""
        target = self.quarantine_dir / batch_id
        ensure_dir(target)
        base = self.claimed / batch_id
        if base.exists():
            move_files(self.sources(batch_id), target / "records")
            syncfs(self.root)  # moved before the manifest that lists them goes
            shutil.rmtree(base)
        archive = self.outbox / f"{batch_id}.tar.gz"
        if archive.exists():
            archive.rename(target / archive.name)
        write_atomic(target / "reason.json", json.dumps(reason, indent=2).encode())
        fsync_dir(self.quarantine_dir)
        return target

    def quarantine_record(self, record: RecordFile, reason: str) -> Path:
        """Move one record (too large for any batch) straight from its storage directory."""
        target = self.quarantine_dir / f"record-{record.member.replace('/', '_')}"
        ensure_dir(target)
        (self.roots[record.kind] / record.relpath).rename(target / Path(record.relpath).name)
        write_atomic(target / "reason.json", json.dumps({"member": record.member, "reason": reason}).encode())
        return target

    def purge(self, covered: Callable[[bytes], bool]) -> int:
        """Delete the records `covered` finds under quarantine/ and sent/ (an erased user's, kept there for an
        operator), and a quarantined batch's archive copy when its records held one; how many records."""
        removed = 0
        for top in (self.quarantine_dir, self.sent):
            for folder, _, names in os.walk(top):
                for name in names:
                    path = f"{folder}/{name}"
                    with contextlib.suppress(FileNotFoundError):
                        if is_record_name(name) and not os.path.islink(path) and covered(Path(path).read_bytes()):  # noqa: PTH114
                            os.unlink(path)  # noqa: PTH108
                            removed += 1
                            self._drop_archive_copies(top, Path(folder))
        return removed

    def _drop_archive_copies(self, top: Path, folder: Path) -> None:
        """The archives of the quarantined batch holding `folder` (they hold the same records)."""
        if top != self.quarantine_dir:
            return
        batch = self.quarantine_dir / folder.relative_to(self.quarantine_dir).parts[0]
        for archive in batch.glob("*.tar.gz"):
            archive.unlink(missing_ok=True)

    def _quarantine_file(self, batch_id: str, member: str, path: str, reason: str) -> None:
        target = self.quarantine_dir / f"invalid-{batch_id}"
        destination = target / member
        ensure_dir(destination.parent)
        Path(path).rename(destination)
        write_atomic(destination.with_name(destination.name + ".reason.txt"), reason.encode())

    def split(self, batch_id: str, new_ids: tuple[str, str]) -> list[str]:
        """Halve a batch (after a 413) into two new claimed batches; returns their ids. The records move
        into the halves' folders: each is then in one place, so a crash part-way sends none twice (the
        first batch skips what has moved)."""
        sources = list(self.sources(batch_id).items())
        half = len(sources) // 2
        for new_id, part in zip(new_ids, (sources[:half], sources[half:]), strict=True):
            move_files(dict(part), self.claimed / new_id)
        (self.outbox / f"{batch_id}.tar.gz").unlink(missing_ok=True)
        syncfs(self.root)
        shutil.rmtree(self.claimed / batch_id)
        syncfs(self.root)
        return list(new_ids)

    def save_status(self, status: dict[str, Any]) -> None:
        """Best effort: `status` shows the last flush's outcome; a full disk must not stop a flush."""
        with contextlib.suppress(OSError):
            write_atomic(self.status_path, json.dumps(status).encode())

    def load_status(self) -> dict[str, Any]:
        """What the last flush saved; empty when there is none or it is unreadable."""
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads(self.status_path.read_text())
            if isinstance(saved, dict):
                return saved
        return {}
