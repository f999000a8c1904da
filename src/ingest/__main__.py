"""`lightspeed-ingest [serve] --config FILE`, `lightspeed-ingest check-config --config FILE` and
`lightspeed-ingest export feedback [--since DAY ...] [--format csv|jsonl] [--output FILE]` (ingest/cli.py).

Reads the `ingest` and `logging` sections of the YAML file (the same format
as the other daemons'; a receiving host needs only those two). Exit codes as
the other daemons: 0 clean stop, 78 configuration error, 73 unusable state
directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from ingest import cli
from lightspeed_common.checks import check_config
from lightspeed_common.config import AppConfig, load_config
from lightspeed_common.errors import EXIT_CONFIG, ConfigError
from lightspeed_common.http.serving import run_service, run_with_config
from lightspeed_common.notify import Notifier
from lightspeed_common.version import VERSION

DEFAULT_CONFIG = Path(os.environ.get("LIGHTSPEED_INGEST_CONFIG", "/etc/lightspeed-ingest/ingest.yaml"))
IDENTIFIER = "lightspeed-ingest"
log = structlog.get_logger("ingest")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=IDENTIFIER, description="Receives uploads and model telemetry.")
    parser.add_argument("--version", action="version", version=f"{IDENTIFIER} {VERSION}")
    commands = parser.add_subparsers(dest="command")
    for name, text in (("serve", "run the ingest service (the default)"), ("check-config", "validate a config file")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML config file")
    cli.add_commands(commands, DEFAULT_CONFIG)
    args = list(argv)
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help", "--version")):
        args.insert(0, "serve")
    return parser.parse_args(args)


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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
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
    return run_with_config(args.config, IDENTIFIER, serve)


if __name__ == "__main__":
    sys.exit(main())
