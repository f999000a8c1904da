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
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from lightspeed import __version__, cli
from lightspeed.auth import API_KEY_PREFIX
from lightspeed.config import AppConfig, is_loopback, load_config
from lightspeed.errors import EXIT_CANTCREAT, EXIT_CONFIG, ConfigError
from lightspeed.notify import Notifier
from lightspeed.preflight import Check, run_checks, server_checks
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


def check_config(path: Path, checks: Callable[[AppConfig], list[Check]] | None = None) -> int:
    """Validate the file, then run every start-up check on this machine (`checks`: the server's by default).

    78 for a configuration problem, 73 for a storage directory only, each problem on its own line.
    """
    try:
        config = load_config(path)
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    problems = run_checks((checks or server_checks)(config))
    for problem in problems:
        if isinstance(problem, ConfigError):
            _print_config_error(problem)
        else:
            print(f"{problem.what}: {problem}", file=sys.stderr)
    for warning in config_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        return EXIT_CONFIG if any(isinstance(p, ConfigError) for p in problems) else EXIT_CANTCREAT
    print(f"{path}: OK")
    return 0


def _print_config_error(exc: ConfigError) -> None:
    print(f"{exc.source}: invalid configuration", file=sys.stderr)
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)


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
        return check_config(args.config)
    if args.command == "new-api-key":
        print(new_api_key())
        return 0
    if args.command in ("models", "telemetry"):
        return cli.run(args, DEFAULT_CONFIG)
    return run_with_config(args.config, "lightspeed", lambda config: serve(config, args.reset_telemetry_client_id))


if __name__ == "__main__":
    sys.exit(main())
