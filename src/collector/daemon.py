"""The collector daemon: recover, watch, flush on an interval, deliver, clean up.

Delivery protocol (DESIGN.md section 4): claim by rename into the spool,
package into outbox/, upload, journal `sent`, clean up, journal `done`.
Every step is idempotent and the journal says which batches were accepted,
so a crash at any point loses nothing and re-sends only a batch whose
acceptance was never recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from watchfiles import Change, awatch

from collector.discovery import RecordFile, is_record_name, plan_batches, scan
from collector.errors import BatchTooLarge, IngressError, IngressRejected, IngressUnavailable, TokenRejected
from collector.journal import Journal
from collector.spool import Spool
from collector.upload import Uploader
from lightspeed import __version__
from lightspeed.atomic import write_atomic
from lightspeed.config import AppConfig
from lightspeed.credentials import read_secret
from lightspeed.identity import installation_id

log = structlog.get_logger("collector")

# Test hook: hard-exit at a named step boundary, as a crash would (see tests).
FAULT_ENV = "LIGHTSPEED_COLLECTOR_FAULT"
FAULT_EXIT = 99
STATUS_FILE = "status.json"


def storage_roots(config: AppConfig) -> dict[str, Path]:
    udc = config.user_data_collection
    roots = {"feedback": udc.feedback_storage, "transcripts": udc.transcripts_storage}
    return {kind: path for kind, path in roots.items() if path is not None}


def spool_dir(config: AppConfig) -> Path:
    if config.collector.spool_dir is not None:
        return config.collector.spool_dir
    first = next(iter(storage_roots(config).values()), config.service.state_dir)
    return first.parent / "spool"


@dataclass
class Totals:
    batches: int = 0
    records: int = 0
    bytes: int = 0
    quarantined: int = 0
    failures: int = 0
    last_success: float | None = None
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Collector:
    """`run()` for the entry point, `async_run()` for tests; `once` does one pass and returns."""

    def __init__(self, config: AppConfig, *, once: bool = False) -> None:
        self.config = config
        self.once = once
        self.spool = Spool(spool_dir(config), storage_roots(config))
        self.journal = Journal(self.spool.journal_path)
        self.totals = Totals()
        self._stop = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._fault = os.environ.get(FAULT_ENV)

    # -- lifecycle ---------------------------------------------------------

    def run(self) -> int:
        return 0 if asyncio.run(self.async_run()) else 1

    def stop(self) -> None:
        self._stop.set()

    async def async_run(self) -> bool:
        """Returns True when everything found was delivered (what `--once` exits on)."""
        await asyncio.to_thread(self.spool.prepare)
        await asyncio.to_thread(self._load_status)
        await self.recover()
        async with aiohttp.ClientSession() as session:
            uploader = await self._uploader(session)
            if self.once:
                return await self.flush(uploader)
            return await self._serve(uploader)

    async def _serve(self, uploader: Uploader) -> bool:
        """Flush now and every interval (or early when enough is pending) until stopped.

        A stop during a flush gives it `shutdown_grace_seconds`, then abandons
        it: a batch cut short is resumed under the same id at the next start.
        Returns True: a stopped daemon has done its job.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        watcher = asyncio.create_task(self._watch())
        interval = self.config.user_data_collection.data_collector.collection_interval
        log.info("collector_started", spool=str(self.spool.root), interval_seconds=interval)
        try:
            while not self._stop.is_set():
                flush = asyncio.create_task(self.flush(uploader))
                await _first(asyncio.shield(flush), self._stop.wait())
                if not flush.done():
                    await self._bounded(flush)
                    return True
                await _first(self._stop.wait(), self._flush_now.wait(), asyncio.sleep(interval))
                self._flush_now.clear()
            if self.config.collector.flush_on_stop:
                await self._bounded(asyncio.create_task(self.flush(uploader)))
            return True
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self._log_summary()

    async def _bounded(self, flush: asyncio.Task[bool]) -> None:
        grace = self.config.collector.shutdown_grace_seconds
        done, _ = await asyncio.wait({flush}, timeout=grace)
        if not done:
            flush.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flush
            log.warning("flush_abandoned_on_stop", grace_seconds=grace, action="resumed at the next start")

    async def _watch(self) -> None:
        """Watch events only hint that a flush may be due early; the rescan is the truth."""
        roots = await asyncio.to_thread(lambda: [p for p in self.spool.roots.values() if p.is_dir()])
        if not roots:
            return
        pending_bytes = 0
        limit = self.config.collector.max_batch_bytes

        def finished_record(change: Change, path: str) -> bool:
            return change is not Change.deleted and is_record_name(Path(path).name)

        async for changes in awatch(*roots, watch_filter=finished_record, stop_event=self._stop, recursive=True):
            pending_bytes += await asyncio.to_thread(_total_size, [path for _, path in changes])
            if pending_bytes >= limit:
                pending_bytes = 0
                self._flush_now.set()

    # -- the protocol ------------------------------------------------------

    async def recover(self) -> None:
        """Finish the cleanup of every batch the journal says was accepted."""
        keep = not self.config.user_data_collection.data_collector.cleanup_after_send
        for entry in await asyncio.to_thread(self.journal.unfinished):
            await asyncio.to_thread(self.spool.finish, entry["batch_id"], keep)
            await asyncio.to_thread(self.journal.append, {"batch_id": entry["batch_id"], "state": "done"})
            log.info("batch_cleanup_recovered", batch_id=entry["batch_id"])
        await asyncio.to_thread(self.journal.compact)

    async def flush(self, uploader: Uploader) -> bool:
        """Deliver what was claimed before, then claim and deliver what is new."""
        all_delivered = True
        for batch_id in await asyncio.to_thread(self.spool.pending):
            if not await self.deliver(uploader, batch_id):
                return await self._finish_flush(False)
        records = await asyncio.to_thread(scan, self.spool.roots)
        cfg = self.config.collector
        batches, oversized = plan_batches(records, cfg.max_batch_files, cfg.max_batch_bytes)
        for record in oversized:
            await asyncio.to_thread(
                self.spool.quarantine_record, record, f"{record.size} bytes: larger than any batch may be"
            )
            self.totals.quarantined += 1
            all_delivered = False
            log.error("record_quarantined", member=record.member, size=record.size, reason="too large")
        for batch in batches:
            batch_id = uuid.uuid4().hex
            if not await self._claim(batch_id, batch):
                return await self._finish_flush(False)
            if not await self.deliver(uploader, batch_id):
                return await self._finish_flush(False)
        return await self._finish_flush(all_delivered and self.totals.quarantined == 0)

    async def _claim(self, batch_id: str, batch: list[RecordFile]) -> bool:
        try:
            await asyncio.to_thread(self.spool.claim, batch_id, batch)
        except OSError as exc:
            return self._disk_trouble("claim", batch_id, exc)
        self._checkpoint("after_claim")
        return True

    async def deliver(self, uploader: Uploader, batch_id: str) -> bool:
        """Package (if not yet), upload, journal, clean up. False when the flush should stop."""
        try:
            package = await asyncio.to_thread(self.spool.package, batch_id)
        except OSError as exc:
            return self._disk_trouble("package", batch_id, exc)
        if package is None:
            return True
        self._checkpoint("after_package")
        try:
            accepted = await uploader.upload(batch_id, package.path)
        except BatchTooLarge as exc:
            return await self._split_or_quarantine(uploader, batch_id, len(package.members), exc)
        except (IngressRejected, TokenRejected) as exc:
            await self._quarantine(batch_id, exc)
            return True
        except IngressUnavailable as exc:
            self.totals.failures += 1
            self.totals.last_error = str(exc)
            log.error("upload_failed", batch_id=batch_id, error=str(exc), action="kept for the next flush")
            return False
        self._checkpoint("after_upload")
        keep = not self.config.user_data_collection.data_collector.cleanup_after_send
        entry = {"batch_id": batch_id, "request_id": accepted.request_id, "files": package.members, "state": "sent"}
        await asyncio.to_thread(self.journal.append, entry)
        self._checkpoint("after_journal")
        await asyncio.to_thread(self.spool.finish, batch_id, keep)
        self._checkpoint("after_cleanup")
        await asyncio.to_thread(self.journal.append, {"batch_id": batch_id, "state": "done"})
        self.totals.batches += 1
        self.totals.records += len(package.members)
        self.totals.bytes += package.size
        self.totals.last_success = time.time()
        log.info(
            "batch_uploaded",
            batch_id=batch_id,
            files=len(package.members),
            bytes=package.size,
            request_id=accepted.request_id,
            status=accepted.status,
            attempts=accepted.attempts,
            duration_ms=round(accepted.seconds * 1000, 1),
        )
        return True

    async def _split_or_quarantine(self, uploader: Uploader, batch_id: str, count: int, exc: IngressError) -> bool:
        if count < 2:
            await self._quarantine(batch_id, exc)
            return True
        halves = (uuid.uuid4().hex, uuid.uuid4().hex)
        await asyncio.to_thread(self.spool.split, batch_id, halves)
        log.warning("batch_split", batch_id=batch_id, into=list(halves), files=count)
        for half in halves:
            if not await self.deliver(uploader, half):
                return False
        return True

    async def _quarantine(self, batch_id: str, exc: IngressError) -> None:
        reason = {"status": exc.status, "response": exc.detail, "error": type(exc).__name__, "at": time.time()}
        target = await asyncio.to_thread(self.spool.quarantine, batch_id, reason)
        self.totals.quarantined += 1
        self.totals.last_error = str(exc)
        log.error("batch_quarantined", batch_id=batch_id, status=exc.status, path=str(target))

    def _disk_trouble(self, step: str, batch_id: str, exc: OSError) -> bool:
        self.totals.failures += 1
        self.totals.last_error = f"{step}: {exc.strerror}"
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        log.error(
            "disk_full" if full else "spool_error",
            step=step,
            batch_id=batch_id,
            reason=exc.strerror,
            action="nothing claimed is lost; retrying at the next flush",
        )
        return False

    async def _finish_flush(self, ok: bool) -> bool:
        status = {
            "last_success": _iso(self.totals.last_success),
            "last_error": self.totals.last_error,
            "batches": self.totals.batches,
            "records": self.totals.records,
            "updated": _iso(time.time()),
        }
        with contextlib.suppress(OSError):
            await asyncio.to_thread(write_atomic, self.spool.root / STATUS_FILE, json.dumps(status).encode())
        return ok

    def _load_status(self) -> None:
        """Carry the last success and error over a restart, for `status`."""
        with contextlib.suppress(OSError, ValueError, TypeError):
            saved = json.loads((self.spool.root / STATUS_FILE).read_text())
            if saved.get("last_success"):
                self.totals.last_success = datetime.fromisoformat(saved["last_success"]).timestamp()
            self.totals.last_error = saved.get("last_error")

    def _checkpoint(self, step: str) -> None:
        if self._fault == step:
            os._exit(FAULT_EXIT)

    def _log_summary(self) -> None:
        t = self.totals
        log.info(
            "collector_stopped",
            batches=t.batches,
            records=t.records,
            bytes=t.bytes,
            quarantined=t.quarantined,
            failures=t.failures,
        )

    async def _uploader(self, session: aiohttp.ClientSession) -> Uploader:
        dc = self.config.user_data_collection.data_collector
        identity = await asyncio.to_thread(installation_id, self.config.service.state_dir)
        cfg = self.config.collector

        def token() -> str | None:
            return read_secret(dc.ingress_server_auth_token, cfg.ingress_token_file, cfg.ingress_token_credential)

        return Uploader(
            session,
            url=str(dc.ingress_server_url),
            service=dc.ingress_content_service_name or "lightspeed",
            token=token,
            user_agent=f"lightspeed-collector/{__version__} (installation {identity})",
            retry=cfg.retry,
            timeout_seconds=float(dc.connection_timeout_seconds),
        )


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _total_size(paths: list[str]) -> int:
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += Path(path).stat().st_size
    return total


async def _first(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
