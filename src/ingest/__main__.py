"""`lightspeed-ingest [serve] --config FILE`, `lightspeed-ingest check-config --config FILE` and
`lightspeed-ingest export feedback [--since DAY ...] [--format csv|jsonl] [--output FILE]` (ingest/cli.py).

Reads the `ingest` and `logging` sections of the YAML file (the same format
as the other daemons'; a receiving host needs only those two). Exit codes as
the other daemons: 0 clean stop, 78 configuration error, 73 unusable state
directory.

Only the arguments are parsed here; what the commands run is in commands.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lightspeed_common.version import VERSION

DEFAULT_CONFIG = Path(os.environ.get("LIGHTSPEED_INGEST_CONFIG", "/etc/lightspeed-ingest/ingest.yaml"))
IDENTIFIER = "lightspeed-ingest"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=IDENTIFIER, description="Receives uploads and model telemetry.")
    parser.add_argument("--version", action="version", version=f"{IDENTIFIER} {VERSION}")
    commands = parser.add_subparsers(dest="command")
    for name, text in (("serve", "run the ingest service (the default)"), ("check-config", "validate a config file")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML config file")
    add_export(commands, DEFAULT_CONFIG)
    args = list(argv)
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help", "--version")):
        args.insert(0, "serve")
    return parser.parse_args(args)


def add_export(commands: argparse._SubParsersAction[argparse.ArgumentParser], default_config: Path) -> None:
    """`export feedback` (ingest/cli.py runs it)."""
    export = commands.add_parser("export", help="export what the ingest holds: feedback as CSV or JSON Lines")
    export.add_argument("what", choices=["feedback"], help="what to export")
    export.add_argument("--config", type=Path, default=default_config, help="YAML config file (address, admin key)")
    export.add_argument("--url", help="the ingest's base URL, e.g. http://127.0.0.1:8090")
    export.add_argument("--since", help="first day, YYYY-MM-DD")
    export.add_argument("--until", help="last day, YYYY-MM-DD")
    export.add_argument("--sentiment", choices=["1", "-1"])
    export.add_argument("--category", help="one of the records' categories, e.g. incorrect")
    export.add_argument("--q", help="text in user_feedback, any case")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.add_argument("--output", type=Path, help="write here (mode 0600) instead of standard output")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Loaded once the arguments are understood: the config and the web stack take most of a second.
    from ingest.commands import run_command  # noqa: PLC0415

    return run_command(args, IDENTIFIER)


if __name__ == "__main__":
    sys.exit(main())
