"""`lightspeed erase --user-id ID`, `lightspeed export --user-id ID` and `lightspeed audit`: one user's
data, and the trail of what was done with it, through the running server's API (the admin action),
so all are safe while the server and the collector run. `erase` asks first unless `--yes`; `export`
writes the JSON document to `--output` (mode 0600: it is the user's data) or to standard output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TextIO
from urllib.parse import quote

from lightspeed.cli_base import Api, Command, dump, table
from lightspeed_common.atomic import private_output
from lightspeed_common.progress import Progress


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


def export(api: Api, args: argparse.Namespace, out: TextIO, ask: Callable[[str], str]) -> int:
    path = f"/v1/users/{quote(args.user_id, safe='')}/data"
    if args.output is None:
        with Progress("exporting", None, unit="B", scale=True) as progress:  # a bar on a terminal's stderr
            api.download(path, sys.stdout.buffer, progress=progress)
        return 0
    with private_output(args.output) as sink, Progress("exporting", None, unit="B", scale=True) as progress:
        written = api.download(path, sink, progress=progress)
    print(f"wrote {written} bytes to {args.output}", file=out)
    return 0


def audit(api: Api, args: argparse.Namespace, out: TextIO, ask: Callable[[str], str]) -> int:
    events = api.call("GET", f"/v1/audit?limit={args.limit}")["events"]
    if args.json:
        dump(events, out)
        return 0
    rows = [("at", "action", "subject", "requested by", "counts")]
    for event in events:
        counts = " ".join(f"{name}={value}" for name, value in event["counts"].items())
        rows.append((event["at"][:19], event["action"], event["subject"][:16], event["requested_by"][:16], counts))
    table(rows, out)
    return 0


COMMANDS: dict[tuple[str, str], Command] = {("erase", ""): erase, ("export", ""): export, ("audit", ""): audit}
