"""structlog set-up: called once from main(), never at import.

JSON lines when stdout is not a terminal (journald; a `priority` key carries
the syslog level), a readable console on a terminal. stdlib loggers (aiohttp,
sentence-transformers) go through the same processors.

Our own events take structlog's fast path (a filtering bound logger, no
stdlib LogRecord) and are written by a background thread, several lines per
write(2): on a busy server the per-request line must cost the event loop
little. `LineWriter.close()` (also registered with atexit) drains the queue.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from queue import Empty, SimpleQueue
from typing import Any, Literal, TextIO

import structlog

_SYSLOG_PRIORITY = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}
_BATCH = 512


def _journald_priority(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    event["priority"] = _SYSLOG_PRIORITY.get(str(event.get("level", "info")), 6)
    return event


class LineWriter:
    """Writes rendered log lines to a stream from a daemon thread, batched."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lines: SimpleQueue[str | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def put(self, line: str) -> None:
        self._lines.put(line)

    def _run(self) -> None:
        while True:
            batch = [self._lines.get()]
            try:
                while len(batch) < _BATCH:
                    batch.append(self._lines.get_nowait())
            except Empty:
                pass
            lines = [line for line in batch if line is not None]
            if lines:
                self._stream.write("\n".join(lines) + "\n")
                self._stream.flush()
            if None in batch:
                return

    def close(self, timeout: float = 2.0) -> None:
        if self._thread.is_alive():
            self._lines.put(None)
            self._thread.join(timeout)


class QueuedLogger:
    """The structlog "logger": hands the rendered line to the writer."""

    def __init__(self, writer: LineWriter) -> None:
        self._writer = writer

    def msg(self, message: str) -> None:
        self._writer.put(message)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class _WriterHandler(logging.Handler):
    """stdlib records, formatted by structlog's ProcessorFormatter, into the same writer."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.put(self.format(record))
        except Exception:
            self.handleError(record)


def configure_logging(
    level: str = "info", fmt: Literal["auto", "json", "console"] = "auto", stream: TextIO | None = None
) -> LineWriter:
    """Route structlog and stdlib logging to `stream` (stdout) in one format."""
    out = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if use_json:
        shared.append(_journald_priority)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer()
    writer = LineWriter(out)
    atexit.register(writer.close)
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *args: QueuedLogger(writer),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = _WriterHandler(writer)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # aiohttp's access log would print query strings (?user_id=...): we log our own line.
    logging.getLogger("aiohttp.access").disabled = True
    return writer
