"""The collector daemon's lifecycle: start, signals, the file watcher, the flush interval, systemd.

What a flush does is `delivery.Delivery`; this module decides when it runs.
Watch events only hint that a flush may be due early; each flush rescans the
storage folders, which are the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import structlog
from watchfiles import Change, awatch

from collector.delivery import Checkpoint, Delivery, Totals, iso
from collector.discovery import iter_records
from collector.spool import Spool
from collector.upload import Uploader, build_uploader
from lightspeed_common import tracing
from lightspeed_common.config import AppConfig
from lightspeed_common.http.outbound import Outbound
from lightspeed_common.notify import Notifier
from lightspeed_common.records import is_record_name

log = structlog.get_logger("collector")

WATCH_SETUP_SECONDS = 10.0  # READY waits this long at most for the file watches
FOLDER_POLL_SECONDS = 1.0  # how often a storage folder that does not exist yet is looked for


class Collector:
    """`run()` for the entry point, `async_run()` for tests; `once` does one pass and returns.

    `checkpoint(step)` is called at each step boundary of the delivery protocol (tests crash there).
    """

    def __init__(self, config: AppConfig, *, once: bool = False, checkpoint: Checkpoint = lambda step: None) -> None:
        self.config = config
        self.once = once
        self.spool = Spool.for_config(config)
        self.delivery = Delivery(config, self.spool, checkpoint)
        self._stop = asyncio.Event()
        self._flush_now = asyncio.Event()
        self.notifier = Notifier.from_environment()
        self._seen = 0  # finished record files the watcher saw since the last flush began
        self._status_sent = 0.0
        self._status_task: asyncio.Task[None] | None = None
        self._watching = asyncio.Event()
        # Set when the watch is in place and systemd is told READY=1 (the first flush follows).
        self.ready = asyncio.Event()

    @property
    def totals(self) -> Totals:
        return self.delivery.totals

    def run(self) -> int:
        return 0 if asyncio.run(self.async_run()) else 1

    def stop(self) -> None:
        if not self._stop.is_set():
            self.notifier.stopping("finishing or abandoning the upload in flight")
        self._stop.set()

    def _status_line(self) -> str:
        t = self.totals
        last = iso(t.last_success) or "never"
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
        if tracing.start("lightspeed-collector"):  # OTEL_* asks for traces
            try:
                return await self._run()
            finally:
                await asyncio.to_thread(tracing.stop)  # the last spans are sent before the process ends
        return await self._run()

    async def _run(self) -> bool:
        await asyncio.to_thread(self.spool.prepare)
        await asyncio.to_thread(self.delivery.load_status)
        cfg = self.config.collector
        outbound = await asyncio.to_thread(Outbound.build, cfg.tls, cfg.proxy, "collector")
        async with outbound.session() as session:
            uploader = await build_uploader(self.config, (session, outbound))
            if self.once:
                try:
                    return await self.flush(uploader)
                finally:
                    self._log_summary()
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

    async def flush(self, uploader: Uploader) -> bool:
        """One delivery pass (see Delivery.flush), then systemd hears the outcome."""
        self._seen = 0
        ok = await self.delivery.flush(uploader, bar=self.once)  # a bar for `--once` only, never every interval
        self._report_status()
        return ok

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
