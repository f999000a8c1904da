"""How fast a request body must arrive: a client that trickles must not hold a connection for hours."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True)
class BodyPace:
    """No pause longer than `pause` seconds, and on average at least `min_rate` bytes a second once the
    first `pause` has passed. A pause bound alone lets one byte every pause - 1 seconds through."""

    pause: float
    min_rate: float


class BodyDeadline:
    """Moves an `asyncio.timeout` as a body arrives; `cause()` says which bound it hit."""

    def __init__(self, deadline: asyncio.Timeout, pace: BodyPace) -> None:
        self._deadline = deadline
        self._pace = pace
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._paused = True
        self.received(0)

    def received(self, size: int) -> None:
        """`size` bytes have arrived in all."""
        next_pause = self._loop.time() + self._pace.pause
        rate_bound = self._started + self._pace.pause + size / self._pace.min_rate
        self._paused = next_pause <= rate_bound
        self._deadline.reschedule(min(next_pause, rate_bound))

    def cause(self) -> str:
        if self._paused:
            return f"no part of the request body arrived for {self._pace.pause:g} seconds"
        return f"the request body averaged under {self._pace.min_rate:g} bytes/s"
