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
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp
import structlog
from watchfiles import Change, awatch

from collector.discovery import Planned, RecordFile, batches, is_record_name, iter_records
from collector.errors import BatchTooLarge, IngressError, IngressRejected, IngressUnavailable, TokenRejected
from collector.journal import Journal
from collector.spool import Package, Spool
from collector.upload import Uploader
from lightspeed import __version__
from lightspeed.atomic import write_atomic
from lightspeed.config import AppConfig
from lightspeed.credentials import read_secret
from lightspeed.identity import installation_id
from lightspeed.notify import Notifier

log = structlog.get_logger("collector")

# Test hook: hard-exit at a named step boundary, as a crash would (see tests).
FAULT_ENV = "LIGHTSPEED_COLLECTOR_FAULT"
FAULT_EXIT = 99
STATUS_FILE = "status.json"
WATCH_SETUP_SECONDS = 10.0  # READY waits this long at most for the file watches
FOLDER_POLL_SECONDS = 1.0  # how often a storage folder that does not exist yet is looked for


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
        self._cleanups: set[asyncio.Task[None]] = set()
        self.notifier = Notifier.from_environment()
        self._seen = 0  # finished record files the watcher saw since the last flush began
        self._status_sent = 0.0
        self._status_task: asyncio.Task[None] | None = None
        self._watching = asyncio.Event()
        # Set when the watch is in place and systemd is told READY=1 (the first flush follows).
        self.ready = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------

    def run(self) -> int:
        return 0 if asyncio.run(self.async_run()) else 1

    def stop(self) -> None:
        if not self._stop.is_set():
            self.notifier.stopping("finishing or abandoning the upload in flight")
        self._stop.set()

    def _status_line(self) -> str:
        t = self.totals
        last = _iso(t.last_success) or "never"
        line = f"{self._seen} new records pending; last upload {last}; sent {t.records} records in {t.batches} batches"
        return line + (f"; last error: {t.last_error}" if t.last_error else "")

    def _report_status(self) -> None:
        self._status_sent = time.monotonic()
        self.notifier.status(self._status_line())

    def _status_changed(self) -> None:
        """New records seen: tell systemd, at most once a second (a burst is one update)."""
        if self._status_task is None or self._status_task.done():
            self._status_task = asyncio.create_task(self._report_status_later())

    async def _report_status_later(self) -> None:
        await asyncio.sleep(max(0.0, self._status_sent + 1.0 - time.monotonic()))
        self._report_status()

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
        watchdog = asyncio.create_task(self.notifier.watchdog())
        interval = self.config.user_data_collection.data_collector.collection_interval
        log.info("collector_started", spool=str(self.spool.root), interval_seconds=interval)
        # Recovered and watching: ready. (Start-up errors happen before this and exit non-zero.)
        await _first(self._watching.wait(), asyncio.sleep(WATCH_SETUP_SECONDS))
        self.notifier.ready(self._status_line())
        self.ready.set()
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
            for task in (watcher, watchdog):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
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
        """Watch events only hint that a flush may be due early; the rescan is the truth.

        A storage folder that does not exist yet (the server creates it at its
        own start) is looked for every FOLDER_POLL_SECONDS (not watched through
        its parent, which could be a large tree such as /var/lib); once it
        appears, the watch restarts with it and counts what it already holds.
        """
        pending_bytes = 0
        limit = self.config.collector.max_batch_bytes
        wanted = list(self.spool.roots.values())
        while not self._stop.is_set():
            roots = await asyncio.to_thread(_existing, wanted)
            missing = [p for p in wanted if p not in roots]
            if not missing:
                await self._watch_roots(roots, pending_bytes, limit, self._stop)
                return
            appeared = asyncio.Event()
            poller = asyncio.create_task(self._wait_for_folders(missing, appeared))
            try:
                if roots:
                    pending_bytes = await self._watch_roots(roots, pending_bytes, limit, appeared)
                else:
                    self._watching.set()
                    await appeared.wait()
            finally:
                poller.cancel()
            now_there = set(await asyncio.to_thread(_existing, missing))
            if now_there:
                log.info("storage_folder_appeared", watching=sorted(str(p) for p in now_there))
                pending_bytes += await asyncio.to_thread(_records_size, now_there)
                if pending_bytes >= limit:
                    pending_bytes = 0
                    self._flush_now.set()

    async def _wait_for_folders(self, missing: list[Path], appeared: asyncio.Event) -> None:
        """Set `appeared` when one of the missing folders exists, or when the collector stops."""
        while not self._stop.is_set():
            if await asyncio.to_thread(_existing, missing):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), FOLDER_POLL_SECONDS)
        appeared.set()

    async def _watch_roots(self, roots: list[Path], pending_bytes: int, limit: int, until: asyncio.Event) -> int:
        """Count new records' bytes below `roots`, flushing early past `limit`, until `until` is set."""

        def finished_record(change: Change, path: str) -> bool:
            return change is not Change.deleted and is_record_name(Path(path).name)

        # yield_on_timeout: the first (possibly empty) yield says the watches are in place.
        watching = awatch(
            *roots,
            watch_filter=finished_record,
            stop_event=until,
            recursive=True,
            rust_timeout=1000,
            yield_on_timeout=True,
        )
        async for changes in watching:
            self._watching.set()
            if not changes:
                continue
            # A record arrives by rename, which the watcher may report as added or modified.
            self._seen += len({path for _, path in changes})
            self._status_changed()
            pending_bytes += await asyncio.to_thread(_total_size, [path for _, path in changes])
            if pending_bytes >= limit:
                pending_bytes = 0
                self._flush_now.set()
        return pending_bytes

    # -- the protocol ------------------------------------------------------

    async def recover(self) -> None:
        """Finish the cleanup of every batch the journal says was accepted."""
        keep = not self.config.user_data_collection.data_collector.cleanup_after_send
        for entry in await asyncio.to_thread(self.journal.unfinished):
            await asyncio.to_thread(self.spool.finish, entry["batch_id"], keep, entry.get("files", ()))
            await asyncio.to_thread(self.journal.append, {"batch_id": entry["batch_id"], "state": "done"})
            log.info("batch_cleanup_recovered", batch_id=entry["batch_id"])
        await asyncio.to_thread(self.journal.compact)

    async def flush(self, uploader: Uploader) -> bool:
        """Deliver what was claimed before, then claim and deliver what is new.

        Pipelined: the next batch is claimed and packaged (on a thread) while
        the current one uploads, and accepted batches are cleaned up in the
        background; each batch's journal entries stay in order. True when
        everything found was delivered: nothing failed, nothing was quarantined.
        """
        quarantined_before = self.totals.quarantined
        self._seen = 0
        try:
            ok = await self._deliver_claimed(uploader) and await self._deliver_new(uploader)
        finally:
            await self._cleanups_done()
        return await self._finish_flush(ok and self.totals.quarantined == quarantined_before)

    async def _deliver_claimed(self, uploader: Uploader) -> bool:
        for batch_id in await asyncio.to_thread(self.spool.pending):
            if not await self.deliver(uploader, batch_id):
                return False
        return True

    async def _deliver_new(self, uploader: Uploader) -> bool:
        cfg = self.config.collector
        planned = batches(iter_records(self.spool.roots), cfg.max_batch_files, cfg.max_batch_bytes)
        upcoming = asyncio.create_task(self._prepare_next(planned))
        try:
            while (prepared := await upcoming) is not None:
                if prepared is False:
                    return False  # the disk said no: stop claiming, keep everything
                upcoming = asyncio.create_task(self._prepare_next(planned))
                batch_id, package = prepared
                if package is None:
                    continue  # nothing left after quarantining invalid files
                if not await self._send(uploader, batch_id, package):
                    return False
            return True
        finally:
            # A batch claimed meanwhile stays claimed: the next flush (or start) delivers it.
            await asyncio.wait({upcoming})

    async def _prepare_next(self, planned: Iterator[Planned]) -> tuple[str, Package | None] | Literal[False] | None:
        """Claim and package the next batch; None when there is none, False when the disk says no."""
        while (batch := await asyncio.to_thread(next, planned, None)) is not None:
            if batch.oversized:
                await self._quarantine_record(batch.records[0])
                continue
            batch_id = uuid.uuid4().hex
            if not await self._claim(batch_id, batch.records):
                return False
            package = await self._package(batch_id)
            if package is False:
                return False
            return batch_id, package
        return None

    async def _quarantine_record(self, record: RecordFile) -> None:
        reason = f"{record.size} bytes: larger than any batch may be"
        await asyncio.to_thread(self.spool.quarantine_record, record, reason)
        self.totals.quarantined += 1
        log.error("record_quarantined", member=record.member, size=record.size, reason="too large")

    async def _claim(self, batch_id: str, batch: list[RecordFile]) -> bool:
        try:
            await asyncio.to_thread(self.spool.claim, batch_id, batch)
        except OSError as exc:
            return self._disk_trouble("claim", batch_id, exc)
        self._checkpoint("after_claim")
        return True

    async def _package(self, batch_id: str) -> Package | Literal[False] | None:
        """The batch's archive, None if nothing was left to send, False on a disk problem."""
        try:
            package = await asyncio.to_thread(self.spool.package, batch_id)
        except OSError as exc:
            return self._disk_trouble("package", batch_id, exc)
        if package is not None:
            self._checkpoint("after_package")
        return package

    async def deliver(self, uploader: Uploader, batch_id: str) -> bool:
        """Package (again, if need be) and send one claimed batch. False when the flush should stop."""
        package = await self._package(batch_id)
        if package is False:
            return False
        return True if package is None else await self._send(uploader, batch_id, package)

    async def _send(self, uploader: Uploader, batch_id: str, package: Package) -> bool:
        """Upload, journal the acceptance, start the cleanup. False when the flush should stop."""
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
        entry = {"batch_id": batch_id, "request_id": accepted.request_id, "files": package.members, "state": "sent"}
        await asyncio.to_thread(self.journal.append, entry)
        self._checkpoint("after_journal")
        self._cleanups.add(asyncio.create_task(self._clean_up(batch_id, package.members)))
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

    async def _clean_up(self, batch_id: str, members: list[str]) -> None:
        """Delete (or keep under sent/) exactly what the journal recorded as accepted, then `done`."""
        keep = not self.config.user_data_collection.data_collector.cleanup_after_send
        await asyncio.to_thread(self.spool.finish, batch_id, keep, members)
        self._checkpoint("after_cleanup")
        await asyncio.to_thread(self.journal.append, {"batch_id": batch_id, "state": "done"})

    async def _cleanups_done(self) -> None:
        """Wait for the background cleanups; one that failed is finished by recovery at the next start."""
        cleanups, self._cleanups = self._cleanups, set()
        for result in await asyncio.gather(*cleanups, return_exceptions=True):
            if isinstance(result, BaseException):
                log.error("cleanup_failed", error=str(result), action="finished at the next start")

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

    def _disk_trouble(self, step: str, batch_id: str, exc: OSError) -> Literal[False]:
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
        self._report_status()
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
        try:
            identity = await asyncio.to_thread(installation_id, self.config.service.state_dir)
        except OSError as exc:
            # The server creates it; a collector that may not write the server's state says so.
            log.warning("installation_id_unavailable", state_dir=str(self.config.service.state_dir), error=exc.strerror)
            identity = "unknown"
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


def _existing(folders: list[Path]) -> list[Path]:
    """The folders that exist (blocking)."""
    return [p for p in folders if p.is_dir()]


def _records_size(roots: set[Path]) -> int:
    """Bytes of the finished records already below these roots (blocking)."""
    return sum(record.size for record in iter_records({str(i): root for i, root in enumerate(roots)}))


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
