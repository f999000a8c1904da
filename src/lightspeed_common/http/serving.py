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
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import structlog
from aiohttp import web

from lightspeed_common.config import AppConfig, load_config
from lightspeed_common.config_base import HttpTimeoutsConfig
from lightspeed_common.errors import EXIT_CANTCREAT, EXIT_CONFIG, EXIT_TEMPFAIL, ConfigError, StorageError
from lightspeed_common.http.guarded_site import GuardedSite
from lightspeed_common.logs import configure_logging
from lightspeed_common.notify import Notifier, watchdog_running

log = structlog.get_logger(__name__)


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    shutdown_timeout: float,
    notifier: Notifier,
    *,
    timeouts: HttpTimeoutsConfig,
    ssl_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve `app` until SIGTERM/SIGINT. Start-up errors (ConfigError, StorageError) propagate.
    `sock`: accept from this listening socket (a worker's) instead of binding host:port."""
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        keepalive_timeout=timeouts.keepalive_timeout_seconds,
        # After an early reply (413, 408), the rest of the body is drained for at most this long.
        lingering_time=timeouts.body_timeout_seconds,
    )
    await runner.setup()
    try:
        site = GuardedSite(
            runner,
            host,
            port,
            timeouts.header_timeout_seconds,
            sock,
            shutdown_timeout=shutdown_timeout,
            ssl_context=ssl_context,
        )
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        log.info("service_listening", host=host, port=port, tls=ssl_context is not None)
        notifier.ready(f"serving on {host}:{port}")
        async with watchdog_running(notifier):
            await stop.wait()
        notifier.stopping("finishing in-flight requests")
        log.info("service_stopping", grace_seconds=shutdown_timeout)
    finally:
        await runner.cleanup()


def run_service(
    app: web.Application,
    host: str,
    port: int,
    shutdown_timeout: float,
    notifier: Notifier,
    *,
    timeouts: HttpTimeoutsConfig,
    ssl_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
) -> int:
    """Serve until stopped; the exit code: 0, 78 for a configuration error, 73 for unusable storage."""
    try:
        asyncio.run(
            serve_app(
                app, host, port, shutdown_timeout, notifier, timeouts=timeouts, ssl_context=ssl_context, sock=sock
            )
        )
    except ConfigError as exc:
        log.error("config_invalid", source=exc.source, problems=exc.problems)
        notifier.status(f"failed: invalid configuration in {exc.source}")
        return EXIT_CONFIG
    except StorageError as exc:
        log.error("storage_unusable", what=exc.what, path=str(exc.path), reason=exc.reason, temporary=exc.temporary)
        notifier.status(f"failed: {exc}")
        return EXIT_TEMPFAIL if exc.temporary else EXIT_CANTCREAT
    return 0


def run_with_config(path: Path, identifier: str, run: Callable[[AppConfig], int]) -> int:
    """Load the config (78 and a log line naming the problem if it is invalid), set up logging, run."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        writer = configure_logging(identifier=identifier)
        log.error("config_invalid", source=exc.source, problems=exc.problems)
        writer.close()
        return EXIT_CONFIG
    writer = configure_logging(config.logging.level, config.logging.format, identifier=identifier)
    try:
        return run(config)
    finally:
        writer.close()
