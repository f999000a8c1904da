"""Command line: `lightspeed [serve] --config FILE`, `lightspeed check-config --config FILE`,
and `lightspeed models|telemetry ...` (through the running server's API; see cli.py).

Exit codes: 0 clean stop, 78 configuration error, 73 unusable storage
directory, 1 anything else (with a traceback in the log).

Only the arguments are parsed here; what the commands run is in commands.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lightspeed import cli_args
from lightspeed_common.version import VERSION

DEFAULT_CONFIG = Path(os.environ.get("LIGHTSPEED_CONFIG", "/etc/lightspeed/lightspeed.yaml"))


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
    cli_args.add_commands(commands)
    args_list = list(argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "serve")
    return parser.parse_args(args_list)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Loaded once the arguments are understood: the config, the web stack and the auth modules take
    # most of a second (the answering stack loads later still, once the socket listens).
    from lightspeed.commands import run_command  # noqa: PLC0415

    return run_command(args, DEFAULT_CONFIG)


if __name__ == "__main__":
    sys.exit(main())
