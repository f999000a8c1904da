"""A dependency's health, asked in the background so that readiness answers at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


class HealthProbe:
    """Runs `check` every `interval` seconds; `problem` is the last failure's text, or None.

    Readiness reads `problem` and never waits: asked directly, a check of a database that is down
    takes its connect timeout (twice, with a retry), and a probe that waits that long tells a load
    balancer nothing it can use.
    """

    def __init__(self, what: str, check: Callable[[], Awaitable[object]], interval: float) -> None:
        self.what = what
        self._check = check
        self._interval = interval
        self.problem: str | None = None

    async def probe(self) -> None:
        """Ask once; log a change of state."""
        try:
            await self._check()
        except Exception as exc:  # any failure of the dependency is its unhealthiness
            problem: str | None = str(exc) or type(exc).__name__
        else:
            problem = None
        if problem != self.problem:
            if problem is None:
                log.info("dependency_healthy", what=self.what)
            else:
                log.warning("dependency_unhealthy", what=self.what, reason=problem)
        self.problem = problem

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HealthProbe]:
        """Probe once now, then in the background every `interval` seconds until the block ends."""
        await self.probe()

        async def loop() -> None:
            while True:
                await asyncio.sleep(self._interval)
                await self.probe()

        task = asyncio.create_task(loop())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
