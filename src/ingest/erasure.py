"""Erasing a user's records at the ingest (issue 26; docs/privacy.md).

An erasure arrives as an `erasure` record in an upload (the collector ships one after the server erased the
user) or through the admin route; either way it is a pending row of `erasures`, committed before the reply.
The erasure task applies pending ones: every upload that may hold the user's records (`upload_users`) has
its archive rewritten without the records the erasure covers (`records.Erasure.covers`: the erasure record
itself included), into a temporary file that replaces it (an archive left empty is deleted); then its index
follows the file. A crash anywhere leaves the row pending and the next pass finds the state of each file as
it is: nothing half-erased stays so. Several nodes may apply the same erasure at once: each step is
idempotent.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import structlog

from ingest.context import Ingest
from ingest.storage import PendingErasure, Rewrite
from lightspeed_common.errors import ServiceUnavailable
from lightspeed_common.records import Erasure, parse_time, record_owner_and_time

log = structlog.get_logger("ingest")
CHUNK = 100  # archives rewritten, made durable and reindexed together


def _owner_and_time(member: str, data: bytes) -> tuple[str | None, datetime | None]:
    try:
        record = json.loads(data)
    except ValueError:
        return None, None
    return record_owner_and_time(member.split("/", 1)[0], record) if isinstance(record, dict) else (None, None)


def _file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return path.stat().st_size, digest.hexdigest()


def rewrite_archive(source: Path, target: Path, erasure: Erasure, durable: bool = True) -> Rewrite:
    """Copy the archive at `source` to `target` without the records `erasure` covers (blocking). `target` is
    left only when something was removed and something kept: the caller moves it in place. `durable`: fsync
    it (else the caller makes a batch of them durable at once)."""
    removed, kept, owners = 0, [], set()
    try:
        with tarfile.open(source, "r:gz") as archive, tarfile.open(target, "w:gz", compresslevel=6) as out:
            for member in archive:
                extracted = archive.extractfile(member) if member.isreg() else None
                if extracted is None:
                    continue
                data = extracted.read()
                owner, written = _owner_and_time(member.name, data)
                if erasure.covers(owner, written):
                    removed += 1
                    continue
                out.addfile(member, io.BytesIO(data))
                kept.append(hashlib.sha256(data).hexdigest())
                if owner is not None:
                    owners.add(owner)
    except FileNotFoundError:
        target.unlink(missing_ok=True)
        return Rewrite(0, [])  # gone already (a crash after deleting it, or retention): its index goes
    if not removed or not kept:
        target.unlink()
        size, sha256 = _file_digest(source) if kept else (0, "")
        return Rewrite(removed, kept, size, sha256, frozenset(owners))
    if durable:
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    size, sha256 = _file_digest(target)
    return Rewrite(removed, kept, size, sha256, frozenset(owners))


def _rewrite_chunk(ingest: Ingest, uploads: list[tuple[str, str]], erasure: Erasure) -> list[tuple[str, Rewrite]]:
    """Rewrite these uploads' archives, then make the new ones durable and move them in place together (one
    flush for the chunk, not one per file); the emptied ones are deleted (blocking)."""
    rewritten = []
    for request_id, name in uploads:
        target = ingest.archives.incoming()
        rewritten.append(
            (request_id, name, target, rewrite_archive(ingest.archives.path(name), target, erasure, False))
        )
    ingest.archives.publish_many(
        [(target, name) for _, name, target, rewrite in rewritten if rewrite.kept and rewrite.removed]
    )
    ingest.archives.delete([name for _, name, _, rewrite in rewritten if not rewrite.kept])
    return [(request_id, rewrite) for request_id, _, _, rewrite in rewritten]


async def apply_erasure(ingest: Ingest, pending: PendingErasure) -> dict[str, int]:
    """Every upload that may hold the user's records, rewritten and reindexed, CHUNK at a time (each chunk's
    files in place before its index follows them); then the erasure is done."""
    storage = ingest.db.storage
    erasure = Erasure(pending.user_hash, parse_time(pending.erased_at))
    counts = {"records": 0, "archives_rewritten": 0, "archives_removed": 0}
    uploads = await ingest.db.run(storage.erasure_uploads, pending.user_hash)
    for start in range(0, len(uploads), CHUNK):
        rewrites = await asyncio.to_thread(_rewrite_chunk, ingest, uploads[start : start + CHUNK], erasure)
        for _, rewrite in rewrites:
            counts["records"] += rewrite.removed
            counts["archives_removed"] += not rewrite.kept
            counts["archives_rewritten"] += bool(rewrite.kept and rewrite.removed)
        await ingest.db.run(storage.erasure_rewritten, rewrites)
    await ingest.db.run(storage.finish_erasure, pending.id, counts, datetime.now(UTC))
    for what, count in counts.items():
        ingest.metrics.erasure_removed.labels(what).inc(count)
    log.info("user_records_erased", erasure_id=pending.id, **counts)
    return counts


async def apply_pending(ingest: Ingest) -> dict[int, dict[str, int]]:
    """Apply every pending erasure, one pass at a time on this node; what each removed, by erasure id."""
    async with ingest.erasure_pass:
        return {
            pending.id: await apply_erasure(ingest, pending)
            for pending in await ingest.db.run(ingest.db.storage.pending_erasures)
        }


async def erasure_task(ingest: Ingest) -> None:
    """Apply pending erasures whenever one may be waiting (the retention pass wakes this too, for those
    another node received or a failure left)."""
    while True:
        await ingest.erasures_waiting.wait()
        ingest.erasures_waiting.clear()
        try:
            await apply_pending(ingest)
        except ServiceUnavailable as exc:
            log.warning("erasure_deferred", reason=exc.cause)
        except Exception:
            log.exception("erasure_failed", action="tried again at the next retention pass")
