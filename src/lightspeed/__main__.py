"""Command line: `lightspeed [serve] --config FILE`, `lightspeed check-config --config FILE`,
and `lightspeed models|telemetry ...` (through the running server's API; see cli.py).

Exit codes: 0 clean stop, 78 configuration error, 73 unusable storage
directory, 1 anything else (with a traceback in the log).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from lightspeed import __version__, cli
from lightspeed.auth import API_KEY_PREFIX
from lightspeed.config import AppConfig, load_config
from lightspeed.errors import EXIT_CONFIG, ConfigError
from lightspeed.notify import Notifier
from lightspeed.serving import run_service, run_with_config

DEFAULT_CONFIG = Path(os.environ.get("LIGHTSPEED_CONFIG", "/etc/lightspeed/lightspeed.yaml"))
log = structlog.get_logger("lightspeed")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lightspeed", description="The lightspeed assistant API server.")
    parser.add_argument("--version", action="version", version=f"lightspeed {__version__}")
    commands = parser.add_subparsers(dest="command")
    for name, text in (
        ("serve", "run the API server (the default)"),
        ("check-config", "validate a config file"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML config file")
        if name == "serve":
            sub.add_argument(
                "--reset-telemetry-client-id",
                action="store_true",
                help="replace the telemetry client id (or forget it, if telemetry is off); logged",
            )
    commands.add_parser(
        "new-api-key", help="print a new random API key for the api-key module's keys file (lsk_ + 43 characters)"
    )
    cli.add_commands(commands)
    args_list = list(argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "serve")
    return parser.parse_args(args_list)


def new_api_key() -> str:
    """A key in this service's own format: the prefix lets redaction and secret scanners recognise it."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def check_config(path: Path) -> int:
    try:
        load_config(path)
    except ConfigError as exc:
        print(f"{exc.source}: invalid configuration", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{path}: OK")
    return 0


def serve(config: AppConfig, reset_telemetry_client_id: bool = False) -> int:
    from lightspeed.app import create_app  # noqa: PLC0415 - keeps check-config free of torch

    service = config.service
    log.info(
        "service_starting",
        version=__version__,
        host=service.host,
        port=service.port,
        provider=config.answers.provider,
        auth=config.authentication.module,
    )
    notifier = Notifier.from_environment()
    app = create_app(config, reset_telemetry_client_id=reset_telemetry_client_id)
    code = run_service(app, service.host, service.port, service.shutdown_timeout_seconds, notifier)
    if code == 0:
        log.info("service_stopped")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "check-config":
        return check_config(args.config)
    if args.command == "new-api-key":
        print(new_api_key())
        return 0
    if args.command in ("models", "telemetry"):
        return cli.run(args, DEFAULT_CONFIG)
    return run_with_config(args.config, "lightspeed", lambda config: serve(config, args.reset_telemetry_client_id))


if __name__ == "__main__":
    sys.exit(main())
