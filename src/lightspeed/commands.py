"""What `lightspeed` runs once its arguments are parsed (`__main__` parses them without loading any of
this, so `--help` and `--version` answer at once): `serve`, `check-config`, `new-api-key`, and the
commands that talk to the running server (cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import structlog
from aiohttp import web

from lightspeed import cli
from lightspeed.api.starting import StartupProgress, starting_app
from lightspeed.api.workers import (
    Supervisor,
    answers_while_starting,
    die_with_supervisor,
    inherited_socket,
    listening_socket,
    metrics_directory,
    worker_index,
)
from lightspeed.auth import API_KEY_PREFIX
from lightspeed.preflight import server_checks
from lightspeed_common.checks import check_config
from lightspeed_common.config import AppConfig
from lightspeed_common.config_base import is_loopback
from lightspeed_common.errors import EXIT_CANTCREAT, EXIT_TEMPFAIL, EXIT_UNAVAILABLE, StorageError
from lightspeed_common.http.metrics import MULTIPROCESS_ENV
from lightspeed_common.http.serving import run_service, run_with_config
from lightspeed_common.notify import Notifier
from lightspeed_common.version import VERSION

log = structlog.get_logger("lightspeed")


def new_api_key() -> str:
    """A key in this service's own format: the prefix lets redaction and secret scanners recognise it."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def config_warnings(config: AppConfig) -> list[str]:
    """Valid but risky settings, said by check-config and logged at start-up."""
    warnings = []
    service = config.service
    if config.authentication.module == "noop" and not is_loopback(service.host):
        warnings.append(
            f"authentication.module is noop and service.host is {service.host}: everyone who can reach "
            "the port is an admin; use api-key (or noop-with-token behind an authenticating proxy)"
        )
    return warnings


def config_notes(config: AppConfig) -> list[str]:
    """What check-config says the config means: how long a user's data is kept on this side."""
    idle = config.conversations.retention_days
    records = config.user_data_collection.retention_days
    return [
        "retention: conversations are "
        + (f"deleted {idle} days after their last turn" if idle else "kept until deleted")
        + " (conversations.retention_days)",
        "retention: records not yet shipped are "
        + (f"deleted {records} days after they were written" if records else "kept until shipped")
        + " (user_data_collection.retention_days)",
    ]


# What `lightspeed serve` imports beyond the base install: the `server` extra (pyproject.toml).
SERVER_EXTRA = ("torch", "sentence_transformers", "bm25s", "Stemmer")
# The event loop waits at most 1 ms for the GIL a model-loading or retrieval thread holds: with the default
# 5 ms, /liveness p99 reached 33 ms while a model loaded (the loop needs it several times per request).
GIL_SWITCH_SECONDS = 0.001


def missing_server_extra() -> list[str]:
    return [name for name in SERVER_EXTRA if importlib.util.find_spec(name) is None]


def serve(config: AppConfig, config_path: Path, reset_telemetry_client_id: bool = False) -> int:
    service = config.service
    worker = worker_index()
    if missing := missing_server_extra():
        log.error(
            "server_extra_missing",
            missing=missing,
            fix="pip install 'lightspeed[server]' (this install has the collector and the ingest only)",
        )
        return EXIT_UNAVAILABLE
    if worker is None:
        log.info(
            "service_starting",
            version=VERSION,
            host=service.host,
            port=service.port,
            workers=service.workers,
            provider=config.answers.provider,
            auth=config.authentication.module,
        )
        for warning in config_warnings(config):
            log.warning("config_risky", warning=warning)
        if service.workers > 1:
            return supervise(config, config_path, reset_telemetry_client_id)
    else:
        die_with_supervisor()
        structlog.contextvars.bind_contextvars(worker=worker)
    notifier = Notifier.from_environment()
    progress = StartupProgress()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)

    def make_app() -> web.Application:
        # Imported here, on start-up's thread, once the socket listens: the answering stack takes a while.
        from lightspeed.api.app import create_app  # noqa: PLC0415 - keeps check-config free of torch

        return create_app(config, reset_telemetry_client_id=reset_telemetry_client_id, progress=progress)

    code = run_service(
        make_app,
        service.host,
        service.port,
        service.shutdown_timeout_seconds,
        notifier,
        timeouts=service.timeouts,
        sock=inherited_socket(),
        while_starting=starting_app(progress) if answers_while_starting() else None,
    )
    if code == 0:
        log.info("service_stopped" if worker is None else "worker_stopped")
    return code


async def prepare_shared_state(config: AppConfig) -> None:
    """Before the workers start, once, by this process alone: the state prepared as every worker's
    start-up prepares it (api/state.py, `open_state`), and the telemetry queue's files from older
    releases imported (a failure stops the start here, not in every worker; workers then only read these)."""
    from lightspeed.api.state import open_state  # noqa: PLC0415 - the main process of several workers
    from lightspeed.store.telemetry_queue import QueueBounds, TelemetryQueue  # noqa: PLC0415

    state = await open_state(config)
    try:
        telemetry = config.telemetry
        bounds = QueueBounds(telemetry.queue_max_events, telemetry.queue_max_bytes, timedelta(days=1))
        await TelemetryQueue.load(state.store, config.service.state_dir, bounds, lambda reason, count: None)
    finally:
        await state.store.close()


def supervise(config: AppConfig, config_path: Path, reset_telemetry_client_id: bool) -> int:
    """`service.workers` processes on one socket (lightspeed.api.workers)."""
    from prometheus_client import multiprocess  # noqa: PLC0415 - only the main process of several workers

    service = config.service
    metrics = metrics_directory(
        Path(os.environ.get(MULTIPROCESS_ENV) or Path(os.environ.get("RUNTIME_DIRECTORY") or service.state_dir))
        / "metrics"
    )
    os.environ[MULTIPROCESS_ENV] = str(metrics)  # inherited by the workers

    def command(index: int, first: bool) -> list[str]:
        argv = [sys.executable, "-m", "lightspeed", "serve", "--config", str(config_path)]
        # The client id is replaced once, by the first worker's first start.
        return [*argv, "--reset-telemetry-client-id"] if reset_telemetry_client_id and index == 0 and first else argv

    try:
        asyncio.run(prepare_shared_state(config))
    except StorageError as exc:
        log.error("storage_unusable", what=exc.what, path=str(exc.path), reason=exc.reason, temporary=exc.temporary)
        return EXIT_TEMPFAIL if exc.temporary else EXIT_CANTCREAT
    try:
        sock = listening_socket(service.host, service.port)
    except OSError as exc:
        log.error("listen_failed", host=service.host, port=service.port, error=exc.strerror)
        return 1
    supervisor = Supervisor(
        command,
        sock,
        service.workers,
        Notifier.from_environment(),
        stop_timeout=service.shutdown_timeout_seconds,
        on_exit=lambda pid: multiprocess.mark_process_dead(pid, str(metrics)),  # type: ignore[no-untyped-call]
    )
    code = asyncio.run(supervisor.run())
    sock.close()
    if code == 0:
        log.info("service_stopped")
    return code


def run_command(args: argparse.Namespace, default_config: Path) -> int:
    """The parsed command; the exit code."""
    if args.command == "check-config":
        return check_config(args.config, server_checks, config_warnings, config_notes)
    if args.command == "new-api-key":
        print(new_api_key())
        return 0
    if args.command in ("models", "telemetry", "erase", "export", "audit"):
        return cli.run(args, default_config)
    return run_with_config(
        args.config, "lightspeed", lambda config: serve(config, args.config, args.reset_telemetry_client_id)
    )
