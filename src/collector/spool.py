"""The spool: claimed batches, their archives, what was sent and what was refused.

    spool/claimed/<batch_id>/{feedback,transcripts}/...   files moved out of the storage dirs
    spool/outbox/<batch_id>.tar.gz                        the archive being uploaded
    spool/sent/<batch_id>/...                             kept records (cleanup_after_send: false)
    spool/quarantine/<name>/                              refused or unusable records, with reason.json
    spool/journal                                         see journal.py

All of it lives on the storage directories' file system, so claiming is a
rename. Blocking: call through a thread.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.discovery import RecordFile, is_record_name
from lightspeed.atomic import ensure_dir, fsync_dir, write_atomic


@dataclass(frozen=True)
class Package:
    batch_id: str
    path: Path
    members: list[str]
    size: int


class Spool:
    def __init__(self, root: Path, roots: Mapping[str, Path]) -> None:
        self.root = root
        self.roots = dict(roots)  # kind -> storage directory
        self.claimed = root / "claimed"
        self.outbox = root / "outbox"
        self.sent = root / "sent"
        self.quarantine_dir = root / "quarantine"
        self.journal_path = root / "journal"

    def prepare(self) -> None:
        for directory in (self.claimed, self.outbox, self.sent, self.quarantine_dir):
            ensure_dir(directory)

    def pending(self) -> list[str]:
        """Batch ids claimed and not yet finished, oldest first."""
        entries = sorted(self.claimed.iterdir(), key=lambda p: p.stat().st_mtime)
        return [p.name for p in entries if p.is_dir()]

    def claim(self, batch_id: str, records: Iterable[RecordFile]) -> list[str]:
        """Move records into claimed/<batch_id>; returns the members actually moved.

        A record that vanished meanwhile is skipped. Renames are made durable
        in both directories before returning.
        """
        target = self.claimed / batch_id
        moved: list[str] = []
        touched: set[Path] = set()
        for record in records:
            source = self.roots[record.kind] / record.relpath
            destination = target / record.member
            ensure_dir(destination.parent)
            try:
                source.rename(destination)
            except FileNotFoundError:
                continue
            moved.append(record.member)
            touched.update((source.parent, destination.parent))
        for directory in touched:
            fsync_dir(directory)
        if not moved and target.exists():
            shutil.rmtree(target)
        return moved

    def members(self, batch_id: str) -> list[str]:
        base = self.claimed / batch_id
        return sorted(
            p.relative_to(base).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.is_symlink() and is_record_name(p.name)
        )

    def package(self, batch_id: str) -> Package | None:
        """Stream the claimed files into outbox/<batch_id>.tar.gz (None if nothing is left).

        Members are `feedback/...` and `transcripts/...`, bytes identical to
        the files. Files that are not valid JSON are quarantined first.
        """
        base = self.claimed / batch_id
        members = []
        for member in self.members(batch_id):
            data = (base / member).read_bytes()
            try:
                json.loads(data)
            except ValueError as exc:
                self._quarantine_file(batch_id, member, f"not valid JSON: {exc}")
                continue
            members.append(member)
        if not members:
            shutil.rmtree(base, ignore_errors=True)
            return None
        final = self.outbox / f"{batch_id}.tar.gz"
        tmp = self.outbox / f".{batch_id}.tar.gz.tmp"
        with tarfile.open(tmp, "w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as archive:
            for member in members:
                path = base / member
                info = tarfile.TarInfo(member)
                info.size = path.stat().st_size
                info.mtime = int(path.stat().st_mtime)
                info.mode = 0o644
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(final)
        fsync_dir(self.outbox)
        return Package(batch_id, final, members, final.stat().st_size)

    def finish(self, batch_id: str, keep: bool) -> None:
        """After acceptance: remove the batch (or keep it under sent/), prune emptied folders."""
        base = self.claimed / batch_id
        members = self.members(batch_id) if base.exists() else []
        if keep and base.exists():
            base.rename(self.sent / batch_id)
            fsync_dir(self.sent)
        elif base.exists():
            shutil.rmtree(base)
        (self.outbox / f"{batch_id}.tar.gz").unlink(missing_ok=True)
        fsync_dir(self.claimed)
        fsync_dir(self.outbox)
        self.prune_sources(members)

    def prune_sources(self, members: Iterable[str]) -> None:
        """Remove user/conversation folders the batch emptied; never a storage directory itself."""
        for member in members:
            kind, _, relpath = member.partition("/")
            root = self.roots.get(kind)
            if root is None:
                continue
            folder = (root / relpath).parent
            while folder != root and root in folder.parents:
                try:
                    folder.rmdir()
                except OSError:
                    break  # not empty (a new record arrived) or already gone
                folder = folder.parent

    def quarantine(self, batch_id: str, reason: dict[str, Any]) -> Path:
        """Move a refused batch, with its archive and the reason, out of the way. Nothing is deleted."""
        target = self.quarantine_dir / batch_id
        ensure_dir(target)
        base = self.claimed / batch_id
        if base.exists():
            base.rename(target / "records")
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

    def _quarantine_file(self, batch_id: str, member: str, reason: str) -> None:
        target = self.quarantine_dir / f"invalid-{batch_id}"
        destination = target / member
        ensure_dir(destination.parent)
        (self.claimed / batch_id / member).rename(destination)
        write_atomic(destination.with_name(destination.name + ".reason.txt"), reason.encode())

    def split(self, batch_id: str, new_ids: tuple[str, str]) -> list[str]:
        """Halve a batch (after a 413) into two new claimed batches; returns their ids."""
        members = self.members(batch_id)
        half = len(members) // 2
        base = self.claimed / batch_id
        for new_id, part in zip(new_ids, (members[:half], members[half:]), strict=True):
            for member in part:
                destination = self.claimed / new_id / member
                ensure_dir(destination.parent)
                (base / member).rename(destination)
        (self.outbox / f"{batch_id}.tar.gz").unlink(missing_ok=True)
        shutil.rmtree(base)
        fsync_dir(self.claimed)
        return list(new_ids)
