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

from lightspeed import cli
from lightspeed.auth import API_KEY_PREFIX
from lightspeed.preflight import server_checks
from lightspeed_common.checks import check_config
from lightspeed_common.config import AppConfig
from lightspeed_common.config_base import is_loopback
from lightspeed_common.http.serving import run_service, run_with_config
from lightspeed_common.notify import Notifier
from lightspeed_common.version import VERSION

DEFAULT_CONFIG = Path(os.environ.get("LIGHTSPEED_CONFIG", "/etc/lightspeed/lightspeed.yaml"))
log = structlog.get_logger("lightspeed")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lightspeed", description="The lightspeed assistant API server.")
    parser.add_argument("--version", action="version", version=f"lightspeed {VERSION}")
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


def serve(config: AppConfig, reset_telemetry_client_id: bool = False) -> int:
    from lightspeed.api.app import create_app  # noqa: PLC0415 - keeps check-config free of torch

    service = config.service
    log.info(
        "service_starting",
        version=VERSION,
        host=service.host,
        port=service.port,
        provider=config.answers.provider,
        auth=config.authentication.module,
    )
    for warning in config_warnings(config):
        log.warning("config_risky", warning=warning)
    notifier = Notifier.from_environment()
    app = create_app(config, reset_telemetry_client_id=reset_telemetry_client_id)
    code = run_service(
        app, service.host, service.port, service.shutdown_timeout_seconds, notifier, timeouts=service.timeouts
    )
    if code == 0:
        log.info("service_stopped")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "check-config":
        return check_config(args.config, server_checks, config_warnings)
    if args.command == "new-api-key":
        print(new_api_key())
        return 0
    if args.command in ("models", "telemetry"):
        return cli.run(args, DEFAULT_CONFIG)
    return run_with_config(args.config, "lightspeed", lambda config: serve(config, args.reset_telemetry_client_id))


if __name__ == "__main__":
    sys.exit(main())
