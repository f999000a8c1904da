"""Progress of long work (issue 27): a bar on a terminal, `progress` log events everywhere else.

On a terminal (standard error is one, and systemd did not start the process) a tqdm bar shows the count,
the rate and the time left; tqdm is there already (the embedding stack uses it) and does one job: draw a
bar that redraws in place. Anywhere else (a pipe, a file, the journal) one structured `progress` event
every `every` seconds says `task`, `done`, `total`, `rate_per_second` and `eta_seconds`, so
`journalctl -f` shows it too; work that ends before the first interval logs nothing, and work that logged
progress logs a last event when it ends.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

import structlog

log = structlog.get_logger("progress")


def on_terminal(stream: TextIO) -> bool:
    """Whether a bar can be drawn: a terminal, and not a service's standard error (journald's stream)."""
    if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False


class Progress:
    """Counts `done` of `total` (None: not known) for one task; a context manager."""

    def __init__(
        self,
        task: str,
        total: int | None,
        *,
        unit: str = "records",
        stream: TextIO | None = None,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        scale: bool = False,
        bar: bool = True,
    ) -> None:
        """`scale`: a quantity of bytes, shown as KiB, MiB, ... on the bar. `bar`: False for work a daemon
        repeats (a bar every interval would crowd its terminal): events only."""
        self.task = task
        self.total = total
        self.unit = unit
        self.done = 0
        self._every = every
        self._clock = clock
        self._started = clock()
        self._next = self._started + every
        self._logged = False
        self._logged_done = -1
        self._bar: Any = None
        out = stream or sys.stderr
        if bar and on_terminal(out):
            from tqdm import tqdm  # type: ignore[import-untyped]  # noqa: PLC0415 - only on a terminal

            shown = {"unit": unit, "unit_scale": True, "unit_divisor": 1024} if scale else {"unit": f" {unit}"}
            self._bar = tqdm(total=total, desc=task, file=out, dynamic_ncols=True, leave=True, **shown)

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        elif self._clock() >= self._next:
            self._log()
            self._next = self._clock() + self._every

    def add_total(self, count: int) -> None:
        """More work was found after the start (the total grows)."""
        self.total = (self.total or 0) + count
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._logged_done != self.done and (self._logged or self._clock() >= self._started + self._every):
            self._log()  # the last word, unless the last event said it already

    def _log(self) -> None:
        elapsed = max(self._clock() - self._started, 1e-9)
        rate = self.done / elapsed
        left = None if self.total is None or rate == 0 else round(max(self.total - self.done, 0) / rate, 1)
        log.info(
            "progress",
            task=self.task,
            done=self.done,
            total=self.total,
            unit=self.unit,
            rate_per_second=round(rate, 1),
            eta_seconds=left,
        )
        self._logged = True
        self._logged_done = self.done

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
