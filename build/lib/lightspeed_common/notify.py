"""The systemd notify protocol, spoken directly over `$NOTIFY_SOCKET` (no library needed).

`Notifier.from_environment()` is inert when the process is not run by
systemd with `Type=notify`: every call is then a no-op. Messages are single
datagrams (`READY=1`, `STATUS=...`, `STOPPING=1`, `WATCHDOG=1`); a failure to
send is logged once and never raised, so a wedged socket cannot take the
service down. With `WatchdogSec=` set, `watchdog_interval()` says how often
to ping (half the timeout, as sd_watchdog_enabled(3) advises).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping

import structlog

log = structlog.get_logger(__name__)


class Notifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog = None
        pid = env.get("WATCHDOG_PID")
        if env.get("WATCHDOG_USEC", "").isdigit() and (pid is None or pid == str(os.getpid())):
            watchdog = int(env["WATCHDOG_USEC"])
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings, or None when no watchdog is configured."""
        return None if not self._watchdog_usec else self._watchdog_usec / 2_000_000

    def send(self, *fields: str) -> None:
        """Send `KEY=value` fields in one datagram (blocking for microseconds: a local socket)."""
        if self._address is None:
            return
        address = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto("\n".join(fields).encode("utf-8"), address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("systemd_notify_failed", error=exc.strerror)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def watchdog(self, healthy: Callable[[], bool] = lambda: True) -> None:
        """Ping WATCHDOG=1 while `healthy()`; runs until cancelled. A stuck event loop stops the pings."""
        interval = self.watchdog_interval()
        if interval is None or not self.enabled:
            return
        while True:
            if healthy():
                self.send("WATCHDOG=1")
            await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def watchdog_running(notifier: Notifier) -> AsyncIterator[None]:
    """Run the watchdog pings for the duration of the block."""
    task = asyncio.create_task(notifier.watchdog(), name="systemd-watchdog")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
