"""What `lightspeed-ingest` runs once its arguments are parsed (`__main__` parses them without loading
any of this, so `--help` and `--version` answer at once): `serve`, `check-config` and `export`."""

from __future__ import annotations

import argparse
import sys

import structlog

from ingest import cli
from lightspeed_common.checks import check_config
from lightspeed_common.config import AppConfig, load_config
from lightspeed_common.errors import EXIT_CONFIG, ConfigError
from lightspeed_common.http.serving import run_service, run_with_config
from lightspeed_common.notify import Notifier
from lightspeed_common.version import VERSION

log = structlog.get_logger("ingest")


def serve(config: AppConfig) -> int:
    from ingest.app import create_app, tls_context  # noqa: PLC0415 - check-config stays light

    settings = config.ingest
    log.info("ingest_starting", version=VERSION, host=settings.host, port=settings.port)
    notifier = Notifier.from_environment()
    try:
        tls = tls_context(settings)
    except ConfigError as exc:
        log.error("config_invalid", source=exc.source, problems=exc.problems)
        return EXIT_CONFIG
    app = create_app(config)
    code = run_service(
        app,
        settings.host,
        settings.port,
        settings.shutdown_timeout_seconds,
        notifier,
        timeouts=settings.timeouts,
        ssl_context=tls,
    )
    if code == 0:
        log.info("ingest_stopped")
    return code


def config_notes(config: AppConfig) -> list[str]:
    """What check-config says the config means: how long what arrives is kept."""
    ingest = config.ingest
    return [
        f"retention: archives and their index are deleted {ingest.archive_retention_days} days after they "
        "arrived (ingest.archive.retention_days)",
        f"retention: model contributions are deleted {ingest.telemetry.retention_days} days after their day "
        "(ingest.telemetry.retention_days)",
        "erasure: a user's records are removed from every archive when an erasure record or the admin route "
        "asks (docs/privacy.md)",
    ]


def run_command(args: argparse.Namespace, identifier: str) -> int:
    """The parsed command; the exit code."""
    if args.command == "check-config":
        from ingest.app import ingest_checks  # noqa: PLC0415 - only for this command

        return check_config(args.config, ingest_checks, notes=config_notes)
    if args.command == "export":
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(f"{exc.source}: invalid configuration: {'; '.join(exc.problems)}", file=sys.stderr)
            return EXIT_CONFIG
        return cli.export(config, args)
    return run_with_config(args.config, identifier, serve)
