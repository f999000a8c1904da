"""Hand-made parts, each beside the standard tool it replaces, in one run: kept only with numbers.

- Record writes: the record writer process (its own GIL, its own framing) vs
  a thread pool doing the same fsync'd atomic writes from the event loop;
  writes/s and the event loop's lag (how late a 1 ms timer fires) while 64
  writes are in flight, beside the lag with no writes.
- Log lines: our LineWriter (structlog's fast path, a thread batching
  write(2)s) vs the standard library's QueueHandler/QueueListener; the cost
  of one line on the calling thread (the event loop), and lines/s to the end.
- Record names: uuid.uuid4() beside the UUID pool (one getrandom(2) per 256) it replaced.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import SimpleQueue
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import structlog

from lightspeed.records.writer import WriterProcess
from lightspeed_common.atomic import write_atomic
from lightspeed_common.logs import configure_logging

WRITES = 3000
IN_FLIGHT = 64
RECORD = b'{"user_id": "u", "user_question": "How do I enable feedback?", "llm_response": "Set it."}' * 4


async def _lag_during(work: Callable[[], Awaitable[None]]) -> tuple[float, list[float]]:
    """Seconds `work` took, and how late each 1 ms timer fired meanwhile (ms)."""
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - started - 0.001) * 1000)

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    await work()
    seconds = time.perf_counter() - started
    done.set()
    await tick
    return seconds, lags


async def _bounded(write: Callable[[Path], Awaitable[None]], folder: Path) -> None:
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> None:
        async with slots:
            await write(folder / f"{i:06d}.json")

    await asyncio.gather(*(one(i) for i in range(WRITES)))


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else 0.0


async def _record_writes(root: Path) -> None:
    _, idle = await _lag_during(lambda: asyncio.sleep(1.0))
    name = "baseline event loop lag, no writes"
    print(f"  {name:<40}: p50 {statistics.median(idle):5.2f} ms  p99 {_p99(idle):6.2f} ms")
    process = WriterProcess(4, [])  # the default service.record_writer_threads
    pool = ThreadPoolExecutor(32)
    loop = asyncio.get_running_loop()

    async def by_process(path: Path) -> None:
        await process.write(path, RECORD)

    async def by_threads(path: Path) -> None:
        await loop.run_in_executor(pool, write_atomic, path, RECORD)

    ways = (("thread pool (32), same writes", by_threads), ("record writer process (4 groups)", by_process))
    for name, write in ways:
        folder = root / name.split()[0]
        folder.mkdir()
        seconds, lags = await _lag_during(lambda write=write, folder=folder: _bounded(write, folder))  # type: ignore[misc]
        print(
            f"  {name:<40}: {WRITES / seconds:6.0f} writes/s, loop lag p50 {statistics.median(lags):5.2f} ms"
            f"  p99 {_p99(lags):6.2f} ms"
        )
    await process.close()
    pool.shutdown()


def _log_cost(log: Any, lines: int) -> float:
    """Microseconds per line on the calling thread: the middleware's line, as under load."""
    started = time.perf_counter()
    for i in range(lines):
        log.info("request_handled", request_id=f"r{i}", route="/v1/feedback", method="POST", status=200, duration_ms=1)
    return (time.perf_counter() - started) / lines * 1e6


class _PooledUuids:
    """The UUID pool the server used to have: one getrandom(2) per 256 UUIDs."""

    def __init__(self) -> None:
        self._pool = b""

    def __call__(self) -> uuid.UUID:
        if not self._pool:
            self._pool = os.urandom(16 * 256)
        raw, self._pool = self._pool[:16], self._pool[16:]
        return uuid.UUID(bytes=raw, version=4)


class _PassRecords(logging.handlers.QueueHandler):
    """Queues the record as it is: structlog's event dict is rendered on the listener's thread."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def _print_log(name: str, caller_us: float, per_second: float) -> None:
    print(f"  {name:<40}: {caller_us:5.1f} µs/line on the caller, {per_second:8.0f} lines/s")


def _logging(lines: int = 50_000) -> None:
    sink = open("/dev/null", "w")  # noqa: SIM115, PTH123 - held for the whole measurement
    writer = configure_logging("info", "json", stream=sink)
    ours = structlog.get_logger("bench")
    started = time.perf_counter()
    caller = _log_cost(ours, lines)
    writer.close(timeout=60)
    total = time.perf_counter() - started
    _print_log("LineWriter (ours)", caller, lines / total)

    queue: SimpleQueue[logging.LogRecord] = SimpleQueue()
    stream = logging.StreamHandler(sink)
    stream.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()]
        )
    )
    listener = logging.handlers.QueueListener(queue, stream)
    root = logging.getLogger()
    root.handlers[:] = [_PassRecords(queue)]
    root.setLevel(logging.INFO)
    structlog.reset_defaults()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    listener.start()
    stdlib = structlog.get_logger("bench")
    started = time.perf_counter()
    caller = _log_cost(stdlib, lines)
    listener.stop()
    total = time.perf_counter() - started
    _print_log("QueueHandler + QueueListener (stdlib)", caller, lines / total)
    root.handlers[:] = []
    sink.close()


def _uuids(count: int = 200_000) -> None:
    source = _PooledUuids()
    for name, make in (("uuid.uuid4() (what src uses)", uuid.uuid4), ("pooled os.urandom (removed)", source)):
        started = time.perf_counter()
        for _ in range(count):
            make()
        print(f"  {name:<40}: {(time.perf_counter() - started) / count * 1e6:5.2f} µs each")


def main() -> bool:
    print(f"== hand-made parts beside the standard tools ({WRITES} records, {IN_FLIGHT} in flight)")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as root:
        asyncio.run(_record_writes(Path(root)))
    _logging()
    _uuids()
    print("  (figures only: the verdicts are in the closing note and docs/architecture.md)")
    return True


if __name__ == "__main__":
    main()
