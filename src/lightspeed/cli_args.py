"""The arguments of `lightspeed`'s sub-commands that talk to the running server (cli.py and
cli_users.py run them). Parsing needs nothing else, so `--help` answers without loading them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def connection(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", type=Path, default=None, help="config file (for the server's address)")
    parser.add_argument("--url", help="the server's base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--api-key-file", type=Path, help="file with an admin API key (or set LIGHTSPEED_API_KEY)")
    parser.add_argument("--json", action="store_true", help="print the server's JSON answers")
    return parser


def add_commands(commands: Any) -> None:
    """The sub-commands that talk to the running server: `models`, `telemetry`, `erase`, `export`, `audit`."""
    models = commands.add_parser("models", help="register, list and activate embedding models")
    model_commands = models.add_subparsers(dest="action", required=True)
    connection(model_commands.add_parser("list", help="list registered models"))
    register = connection(model_commands.add_parser("register", help="register a model"))
    register.add_argument("model_name", help="public name, e.g. all-MiniLM-L6-v2 or org/name")
    register.add_argument(
        "--source",
        default=None,
        choices=["sentence-transformers", "local_path"],
        help="where the model comes from: a sentence-transformers name, or a local directory (--path); "
        "default: local_path with --path, sentence-transformers otherwise",
    )
    register.add_argument("--path", help="the model directory (implies --source local_path)")
    register.add_argument("--activate", action="store_true", help="make it the active model when it loads")
    activate = connection(model_commands.add_parser("activate", help="switch retrieval to a registered model"))
    activate.add_argument("model_name", help="a registered model's name, as `lightspeed models list` shows it")
    activate.add_argument("--no-wait", action="store_true", help="return once the switch has started")

    telemetry = commands.add_parser("telemetry", help="opt-in model telemetry: status, consent, queue")
    telemetry_commands = telemetry.add_subparsers(dest="action", required=True)
    for name, text in (
        ("status", "show whether telemetry is on, and why not"),
        ("queue", "print the queued events exactly as they would be sent (JSON lines)"),
        ("disable", "turn telemetry off (sends nothing about it)"),
    ):
        connection(telemetry_commands.add_parser(name, help=text))
    enable = connection(telemetry_commands.add_parser("enable", help="review the fields and turn telemetry on"))
    enable.add_argument("--yes", action="store_true", help="consent without the prompt (the fields are still shown)")
    send = connection(telemetry_commands.add_parser("send", help="send the queue now"))
    send.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the outcome (max 30)")
    purge = connection(telemetry_commands.add_parser("purge", help="delete every queued event"))
    purge.add_argument("--yes", action="store_true", help="do not ask")
    deletion = connection(
        telemetry_commands.add_parser("request-deletion", help="ask the registry to delete this installation's data")
    )
    deletion.add_argument("--yes", action="store_true", help="do not ask")
    _add_user_commands(commands)


def _add_user_commands(commands: Any) -> None:
    erase = connection(commands.add_parser("erase", help="erase one user's conversations and records"))
    erase.set_defaults(action="")
    erase.add_argument("--user-id", required=True, help="the user's id, as the auth module names it")
    erase.add_argument("--yes", action="store_true", help="do not ask")
    export = connection(commands.add_parser("export", help="one user's conversations and records, as JSON"))
    export.set_defaults(action="")
    export.add_argument("--user-id", required=True, help="the user's id, as the auth module names it")
    export.add_argument("--output", type=Path, help="write here (mode 0600) instead of standard output")
    trail = connection(commands.add_parser("audit", help="the audit trail: erasures and exports, newest first"))
    trail.set_defaults(action="")
    trail.add_argument("--limit", type=int, default=100, help="how many events (1 to 1000)")
