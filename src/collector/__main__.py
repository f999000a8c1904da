"""`lightspeed-collector [run] --config FILE [--once]` and `lightspeed-collector status --config FILE`.

Exit codes: 0 done (with --once: everything found was delivered), 1 something
was left undelivered or quarantined, 78 configuration error.

Only the arguments are parsed here; what the commands run is in commands.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lightspeed_common.version import VERSION

CONFIG_HELP = "YAML config file (default /etc/lightspeed/lightspeed.yaml)"
ONCE_HELP = "one full pass, then exit: 0 when everything found was delivered, 1 otherwise"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lightspeed-collector",
        description="Ship lightspeed records to ingress. Without a command: run.",
        epilog="`lightspeed-collector status --config FILE` shows what waits, by stage.",
    )
    # Shown here for `lightspeed-collector --help`; the command's own options do the parsing.
    parser.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=CONFIG_HELP)
    parser.add_argument("--once", action="store_true", default=argparse.SUPPRESS, help=ONCE_HELP)
    parser.add_argument("--version", action="version", version=f"lightspeed-collector {VERSION}")
    commands = parser.add_subparsers(dest="command")
    for name, text in (("run", "run the collector (the default)"), ("status", "show what waits, by stage")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--config", type=Path, default=Path("/etc/lightspeed/lightspeed.yaml"), help=CONFIG_HELP)
        if name == "run":
            sub.add_argument("--once", action="store_true", help=ONCE_HELP)
    args = list(argv)
    if not args or args[0] not in ("run", "status", "-h", "--help", "--version"):
        args.insert(0, "run")
    return parser.parse_args(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Loaded once the arguments are understood: the config, the spool and the daemon take most of a second.
    from collector.commands import run_command  # noqa: PLC0415

    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
