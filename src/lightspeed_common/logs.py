"""structlog set-up: called once from main(), never at import.

JSON lines when stdout is not a terminal (a `priority` key carries the syslog
level), a readable console on a terminal. Under systemd (stdout is the
journal stream named by `$JOURNAL_STREAM`) each line goes to journald over
its native protocol instead: PRIORITY from the level, every key as a journal
field (EVENT=, REQUEST_ID=, ...), and a readable MESSAGE; so
`journalctl -p warning` filters and `journalctl -o json` shows the fields.
stdlib loggers (aiohttp, sentence-transformers) go through the same processors.

Our own events take structlog's fast path (a filtering bound logger, no
stdlib LogRecord) and are written by a background thread, several lines per
write(2): on a busy server the per-request line must cost the event loop
little. The thread lets lines gather for 20 ms after the first of a batch, so
that handing a line over rarely has to wake it. `LineWriter.close()` (also
registered with atexit) drains the queue.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping
from queue import Empty, SimpleQueue
from typing import Any, Literal, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError

_SYSLOG_PRIORITY = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}
_BATCH = 4096
_COALESCE_SECONDS = 0.02


def _journald_priority(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    event["priority"] = _SYSLOG_PRIORITY.get(str(event.get("level", "info")), 6)
    return event


JOURNAL_SOCKET = "/run/systemd/journal/socket"
_FIELD = re.compile(r"[^A-Z0-9_]")


def journal_stream_matches(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether `stream` is the journal stream systemd connected (sd_journal_stream_fd(3) semantics)."""
    expected = environ.get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def _field(name: str) -> str:
    key = _FIELD.sub("_", name.upper()).lstrip("_")
    return key if key and not key[0].isdigit() else f"F_{key}"


def _encode_field(name: str, value: str) -> bytes:
    data = value.encode("utf-8", errors="replace")
    if b"\n" in data:  # the binary-safe form: name, newline, 64-bit little-endian length, data
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


def journal_datagram(line: str, identifier: str) -> bytes:
    """A rendered JSON log line as a native journal entry."""
    try:
        event = json.loads(line)
    except ValueError:
        event = {"event": line}
    if not isinstance(event, dict):
        event = {"event": line}
    name = str(event.get("event", ""))
    details = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "level", "timestamp", "priority"))
    fields = [
        _encode_field("MESSAGE", f"{name} {details}".strip()),
        _encode_field("PRIORITY", str(event.get("priority", 6))),
        _encode_field("SYSLOG_IDENTIFIER", identifier),
    ]
    for key, value in event.items():
        if key != "priority":
            text = value if isinstance(value, str) else json.dumps(value)
            fields.append(_encode_field(_field(key), text))
    return b"".join(fields)


class LineWriter:
    """Writes rendered log lines to a stream from a daemon thread, batched."""

    def __init__(self, stream: TextIO, journal_socket: str | None = None, identifier: str = "lightspeed") -> None:
        self._stream = stream
        self._journal: socket.socket | None = None
        self._journal_address = journal_socket
        self._identifier = identifier
        if journal_socket is not None:
            self._journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._lines: SimpleQueue[str | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def put(self, line: str) -> None:
        self._lines.put(line)

    def _run(self) -> None:
        while True:
            batch = [self._lines.get()]
            # Let the lines of the next few milliseconds gather: a put() while this thread sleeps only
            # appends, where a put() to a waiting thread wakes it, which on a busy server cost the event
            # loop a thread switch per request.
            time.sleep(_COALESCE_SECONDS)
            try:
                while len(batch) < _BATCH:
                    batch.append(self._lines.get_nowait())
            except Empty:
                pass
            lines = [line for line in batch if line is not None]
            if lines and self._journal is not None:
                lines = [line for line in lines if not self._to_journal(line)]
            if lines:
                self._stream.write("\n".join(lines) + "\n")
                self._stream.flush()
            if None in batch:
                return

    def _to_journal(self, line: str) -> bool:
        """Send one entry; False (the caller writes it to stdout instead) if journald refuses it."""
        assert self._journal is not None
        try:
            self._journal.sendto(journal_datagram(line, self._identifier), str(self._journal_address))
        except OSError:
            return False  # too large, or journald is restarting: stdout still reaches the journal
        return True

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


_SAFE_REASON = re.compile(r"[A-Za-z][A-Za-z ,()-]{0,79}")


class ScrubParserErrors(logging.Filter):
    """aiohttp logs a request it cannot parse with the offending bytes: an API key, when the bad
    character follows one. Such a record becomes one warning with the error's kind, never the bytes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            found = _SAFE_REASON.match(str(exc.message).lstrip())
            record.msg, record.args = "http_request_unparseable", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.reason = found.group(0).strip() if found else type(exc).__name__
            record.status = exc.code
        return True


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
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
    journal_socket: str | None = None,
    identifier: str = "lightspeed",
) -> LineWriter:
    """Route structlog and stdlib logging to `stream` (stdout) in one format.

    Under systemd (see `journal_stream_matches`) entries go to journald's
    native socket; `journal_socket` names another socket (tests).
    """
    out = stream or sys.stdout
    if journal_socket is None and journal_stream_matches(out, os.environ):
        journal_socket = JOURNAL_SOCKET
    use_json = journal_socket is not None or fmt == "json" or (fmt == "auto" and not out.isatty())
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
    writer = LineWriter(out, journal_socket, identifier=identifier)
    atexit.register(writer.close)
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *args: QueuedLogger(writer),
        cache_logger_on_first_use=True,
    )
    _route_stdlib_logging(writer, shared, renderer, numeric)
    return writer


def _route_stdlib_logging(writer: LineWriter, shared: list[Any], renderer: Any, level: int) -> None:
    """stdlib loggers (aiohttp, libraries) through the same processors, into the same writer."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(allow=("reason", "status")),
            *shared,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = _WriterHandler(writer)
    handler.setFormatter(formatter)
    # On the handler too: a library that sets its own logger to DEBUG (bm25s does) is held to `level`.
    handler.setLevel(level)
    handler.addFilter(ScrubParserErrors())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log would print query strings (?user_id=...): we log our own line.
    logging.getLogger("aiohttp.access").disabled = True
