"""Running the app as a daemon: listen, tell systemd when ready, stop gracefully on SIGTERM.

Ready means serving: READY=1 is sent only after every start-up resource is
open (models, index, record writer) and the socket is listening. A daemon
whose start-up takes a while (the API server) listens first with a small
application of its own (`while_starting`: alive, not ready, why), then hands
the same listening socket to the real one. On SIGTERM
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
from lightspeed_common.http.guarded_site import AcceptFailures, GuardedSite
from lightspeed_common.logs import configure_logging
from lightspeed_common.notify import Notifier, watchdog_running

log = structlog.get_logger(__name__)


AppSource = web.Application | Callable[[], web.Application]


def _stop_on_signals() -> asyncio.Event:
    """Set on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def _runner(app: web.Application, timeouts: HttpTimeoutsConfig) -> web.AppRunner:
    return web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        keepalive_timeout=timeouts.keepalive_timeout_seconds,
        # After an early reply (413, 408), the rest of the body is drained for at most this long.
        lingering_time=timeouts.body_timeout_seconds,
    )


async def _made(source: AppSource) -> web.Application:
    """The application; made on a thread when `source` makes it (imports and all)."""
    return source if isinstance(source, web.Application) else await asyncio.to_thread(source)


async def _start_behind(
    source: AppSource, site: GuardedSite, starting: web.AppRunner, timeouts: HttpTimeoutsConfig, stop: asyncio.Event
) -> web.AppRunner | None:
    """Start the real application while `starting` answers on `site`, then hand the site over to it: new
    connections go to the real application, and the starting one's close once their request is answered.
    None when a stop signal came first (what start-up had opened is closed again)."""
    runner = _runner(await _made(source), timeouts)
    setup = asyncio.ensure_future(runner.setup())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({setup, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not setup.done():
        setup.cancel()
        await asyncio.gather(setup, return_exceptions=True)
        return None
    setup.result()  # a start-up error (ConfigError, StorageError) propagates
    site.hand_over(starting, runner)
    await starting.cleanup()
    return runner


async def serve_app(
    source: AppSource,
    host: str,
    port: int,
    shutdown_timeout: float,
    notifier: Notifier,
    *,
    timeouts: HttpTimeoutsConfig,
    ssl_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
    while_starting: web.Application | None = None,
) -> None:
    """Serve the application until SIGTERM/SIGINT. Start-up errors (ConfigError, StorageError) propagate.

    `source` is the application or what makes it (called on a thread). `sock`: accept from this listening
    socket (a worker's) instead of binding host:port. `while_starting`: listen at once and answer with
    this application until the real one has started (READY=1 only then)."""
    asyncio.get_running_loop().set_exception_handler(AcceptFailures())
    first = _runner(await _made(source) if while_starting is None else while_starting, timeouts)
    await first.setup()
    # Only now: a stop signal during a (long) start-up without `while_starting` ends the process at once.
    stop = _stop_on_signals()
    runner: web.AppRunner | None = first
    try:
        site = GuardedSite(
            first,
            host,
            port,
            timeouts.header_timeout_seconds,
            sock,
            shutdown_timeout=shutdown_timeout,
            ssl_context=ssl_context,
        )
        await site.start()
        log.info("service_listening", host=host, port=port, tls=ssl_context is not None, starting=bool(while_starting))
        if while_starting is not None:
            runner = await _start_behind(source, site, first, timeouts, stop)
            if runner is None:
                return
        notifier.ready(f"serving on {host}:{port}")
        async with watchdog_running(notifier):
            await stop.wait()
        notifier.stopping("finishing in-flight requests")
        log.info("service_stopping", grace_seconds=shutdown_timeout)
    finally:
        if runner is not None:
            await runner.cleanup()
        if runner is not first:
            await first.cleanup()


def run_service(
    app: AppSource,
    host: str,
    port: int,
    shutdown_timeout: float,
    notifier: Notifier,
    *,
    timeouts: HttpTimeoutsConfig,
    ssl_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
    while_starting: web.Application | None = None,
) -> int:
    """Serve until stopped; the exit code: 0, 78 for a configuration error, 73 for unusable storage."""
    try:
        asyncio.run(
            serve_app(
                app,
                host,
                port,
                shutdown_timeout,
                notifier,
                timeouts=timeouts,
                ssl_context=ssl_context,
                sock=sock,
                while_starting=while_starting,
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
