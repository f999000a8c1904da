"""`lightspeed erase --user-id ID`: a user's data erased through the running server's API
(DELETE /v1/users/{user_id}/data, the admin action), so it is safe while the server and the
collector run; it asks first unless `--yes`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import quote

from lightspeed.cli_base import Api, Command, connection, dump


def add_commands(commands: Any) -> None:
    erase = connection(commands.add_parser("erase", help="erase one user's conversations and records"))
    erase.set_defaults(action="")
    erase.add_argument("--user-id", required=True, help="the user's id, as the auth module names it")
    erase.add_argument("--yes", action="store_true", help="do not ask")


def erase(api: Api, args: argparse.Namespace, out: TextIO, ask: Callable[[str], str]) -> int:
    question = f"Erase every conversation and unsent record of user {args.user_id}? [y/N] "
    if not args.yes and ask(question).strip().lower() not in ("y", "yes"):
        print("nothing erased", file=out)
        return 0
    result = api.call("DELETE", f"/v1/users/{quote(args.user_id, safe='')}/data")
    if args.json:
        dump(result, out)
        return 0
    erased = result["erased"]
    print(
        f"erased {erased['conversations']} conversations ({erased['turns']} turns), {erased['transcripts']} "
        f"transcripts and {erased['feedback']} feedback not yet shipped; the collector drops the rest",
        file=out,
    )
    return 0


COMMANDS: dict[tuple[str, str], Command] = {("erase", ""): erase}
