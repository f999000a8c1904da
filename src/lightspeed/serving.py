"""Running the app as a daemon: listen, tell systemd when ready, stop gracefully on SIGTERM.

Ready means serving: READY=1 is sent only after every start-up resource is
open (models, index, record writer) and the socket is listening. On SIGTERM
or SIGINT: STOPPING=1, the listening socket closes, in-flight requests and
streams get `service.shutdown_timeout_seconds` to finish, then the app's
resources close (telemetry's last send is bounded to 2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog
from aiohttp import web

from lightspeed.notify import Notifier, watchdog_running

log = structlog.get_logger(__name__)


async def serve_app(app: web.Application, host: str, port: int, shutdown_timeout: float, notifier: Notifier) -> None:
    """Serve `app` until SIGTERM/SIGINT. Start-up errors (ConfigError, StorageError) propagate."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, shutdown_timeout=shutdown_timeout)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        log.info("service_listening", host=host, port=port)
        notifier.ready(f"serving on {host}:{port}")
        async with watchdog_running(notifier):
            await stop.wait()
        notifier.stopping("finishing in-flight requests")
        log.info("service_stopping", grace_seconds=shutdown_timeout)
    finally:
        await runner.cleanup()
