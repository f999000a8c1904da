"""When a daemon runs out of file descriptors (EMFILE, ENFILE): what it answers and what it logs.

A connection already accepted whose request then needs a file (an upload's
spool file, a record) gets 503 with `Retry-After`, not a 500 with a traceback:
nothing about the request was wrong, and trying again shortly may work. Each
kind of shortage (connections not accepted, requests refused) is one warning
that names the limit and what to change, then at most one every 10 s with the
count in between: in a shortage, hundreds of connections fail in one second.
"""

from __future__ import annotations

import errno
import resource
import time
from typing import Any

import structlog

log = structlog.get_logger(__name__)

NO_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})
RETRY_AFTER_SECONDS = 5
HINT = "raise LimitNOFILE= in the unit, or find what holds the descriptors"


def lack_of_descriptors(exc: BaseException) -> OSError | None:
    """The EMFILE or ENFILE behind `exc`: itself, or an error it was raised from (a few levels down)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in NO_DESCRIPTORS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class ShortageLog:
    """One warning for a run of the same shortage, then at most one every `every_seconds`; `count_field`
    says how many happened since the last warning (the first included)."""

    def __init__(self, event: str, count_field: str, every_seconds: float = 10.0) -> None:
        self._event = event
        self._count_field = count_field
        self._every = every_seconds
        self._last: float | None = None
        self._since = 0

    def report(self, error: object, **fields: Any) -> None:
        self._since += 1
        now = time.monotonic()
        if self._last is not None and now - self._last < self._every:
            return
        log.warning(
            self._event,
            error=str(error),
            **{self._count_field: self._since},
            open_files_limit=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            **fields,
        )
        self._last, self._since = now, 0
