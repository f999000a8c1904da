"""`lightspeed models ...`, `lightspeed telemetry ...` and `lightspeed erase`: the settings API from
a terminal. Every command talks to the running server (its URL from `--url`, else the config's
service.host and port); cli_base.py has what they share and the exit codes, cli_args.py their
arguments (parsed before any of this loads).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from lightspeed import cli_users
from lightspeed.cli_base import (
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Api,
    ApiRefused,
    Command,
    ask_terminal,
    dump,
    run_command,
    table,
)

__all__ = ["EXIT_REFUSED", "EXIT_UNAVAILABLE", "EXIT_USAGE", "run"]
ACTIVATION_TIMEOUT_SECONDS = 600.0


MODEL_COLUMNS = ("model_name", "model_source", "status", "embedding_dimension", "normalization", "distance_metric")


def models_list(api: Api, args: argparse.Namespace, out: TextIO, ask: Callable[[str], str]) -> int:
    listing = api.call("GET", "/v1/embedding-models")
    if args.json:
        dump(listing, out)
        return 0
    rows = [[*MODEL_COLUMNS, "active"]]
    rows += [[m.get(c) for c in MODEL_COLUMNS] + ["*" if m["active"] else ""] for m in listing["models"]]
    table(rows, out)
    return 0


def models_register(api: Api, args: argparse.Namespace, out: TextIO, ask: Callable[[str], str]) -> int:
    source = args.source or ("local_path" if args.path else "sentence-transformers")
    body: dict[str, Any] = {"model_name": args.model_name, "model_source": source, "activate": args.activate}
    if args.path:
        body["local_path"] = str(Path(args.path).resolve())
    try:
        result = api.call("POST", "/v1/embedding-models", body, seconds=ACTIVATION_TIMEOUT_SECONDS)
    except ApiRefused as exc:
        if exc.status == 422 and isinstance(exc.body, dict) and "error_code" in exc.body:
            print(f"{args.model_name} cannot be used ({exc.body['error_code']}): {exc}", file=sys.stderr)
            return EXIT_REFUSED
        raise
    if args.json:
        dump(result, out)
        return 0
    model = result["model"]
    print(f"registered {model['model_name']}", file=out)
    for key in (
        "embedding_dimension",
        "normalization",
        "distance_metric",
        "modalities",
        "device_type",
        "model_version",
    ):
        print(f"  {key}: {model.get(key)}", file=out)
    telemetry = result["telemetry"]
    print(
        f"  telemetry: {'event queued' if telemetry['queued'] else 'not queued (' + telemetry['reason'] + ')'}",
        file=out,
    )
    return 0


def models_activate(api: Api, args: argparse.Namespace, out: TextIO, ask: Callable[[str], str]) -> int:
    api.call("PUT", "/v1/embedding-models/active", {"model_name": args.model_name})
    print(f"activating {args.model_name}: rebuilding the index", file=out)
    if args.no_wait:
        return 0
    return asyncio.run(_wait_for_activation(api, args.model_name, out))


async def _wait_for_activation(api: Api, name: str, out: TextIO) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ACTIVATION_TIMEOUT_SECONDS
    while loop.time() < deadline:
        listing = await api.request("GET", "/v1/embedding-models", None, 30)
        activation = listing.get("activation") or {}
        if activation.get("model_name") == name and activation.get("state") != "building":
            ok = activation.get("state") == "done"
            print(f"{name} is active" if ok else f"activation failed: {activation.get('error')}", file=out)
            return 0 if ok else EXIT_REFUSED
        await asyncio.sleep(0.25)
    print(f"{name} is still being activated; see `lightspeed models list`", file=out)
    return EXIT_REFUSED


def telemetry_status(api: Api, args: argparse.Namespace, out: TextIO, ask: Callable[[str], str]) -> int:
    status = api.call("GET", "/v1/telemetry")
    if args.json:
        dump(status, out)
        return 0
    state = "enabled" if status["enabled"] else f"disabled ({status['disabled_reason']})"
    queue, sender = status["queue"], status["sender"]
    last = sender.get("last_result")
    rows = [
        ["telemetry", state],
        ["client id", status["client_id"]],
        ["registry", status["registry_url"]],
        ["queued", f"{queue['events']} events, {queue['bytes']} bytes (max {queue['max_events']})"],
        ["next send", sender["next_send_at"]],
        ["last send", f"{last['result']} at {last['finished_at']}" if last else "never"],
    ]
    table(rows, out)
    return 0


def telemetry_enable(api: Api, args: argparse.Namespace, out: TextIO, ask: Callable[[str], str]) -> int:
    consent = api.call("GET", "/v1/telemetry/consent")
    current = api.call("GET", "/v1/telemetry")
    if current["enabled"] and current["consent_version"] == consent["version"]:
        print(f"telemetry is already enabled; client id {current['client_id']}", file=out)
        return 0
    if consent.get("do_not_track"):
        print(f"cannot enable: {consent['disabled_reason']}", file=sys.stderr)
        return EXIT_REFUSED
    print(consent["purpose"], file=out)
    print(f"\nEach registered model queues one event, sent about daily to {consent['registry_url']}:", file=out)
    table([["field", "type", "meaning"], *[[f["name"], f["type"], f["description"]] for f in consent["fields"]]], out)
    print("\nNever sent: " + "; ".join(consent["never_sent"]), file=out)
    if not args.yes and ask("\nEnable telemetry and send these fields? [y/N] ").strip().lower() not in ("y", "yes"):
        print("telemetry stays off", file=out)
        return 0
    status = api.call("PUT", "/v1/telemetry", {"enabled": True, "consent_version": consent["version"]})
    print(f"telemetry enabled; client id {status['client_id']}", file=out)
    return 0


def telemetry_disable(api: Api, args: argparse.Namespace, out: TextIO, ask: Callable[[str], str]) -> int:
    status = api.call("PUT", "/v1/telemetry", {"enabled": False})
    queued = status["queue"]["events"]
    print("telemetry disabled; nothing was sent about it", file=out)
    if queued:
        print(f"{queued} events are still queued and will not be sent: `lightspeed telemetry purge`", file=out)
    return 0


def telemetry_queue(api: Api, args: argparse.Namespace, out: TextIO, ask: Callable[[str], str]) -> int:
    queue = api.call("GET", "/v1/telemetry/queue")
    if args.json:
        dump(queue, out)
        return 0
    for item in queue["events"]:
        print(json.dumps(item["event"], separators=(",", ":")), file=out)
    held = sum(1 for item in queue["events"] if not item["will_send"])
    print(f"# {len(queue['events'])} events queued, {held} dated before consent (never sent)", file=sys.stderr)
    return 0


def telemetry_send(api: Api, args: argparse.Namespace, out: TextIO, ask: Callable[[str], str]) -> int:
    outcome = api.call("POST", f"/v1/telemetry/send?wait={args.wait:g}", seconds=args.wait + 30)
    if args.json:
        dump(outcome, out)
        return 0
    if outcome["result"] == "sending":
        print("sending in the background; see `lightspeed telemetry status`", file=out)
        return 0
    print(
        f"{outcome['result']}: {outcome['accepted']} accepted, {outcome['rejected']} rejected, "
        f"{outcome['dropped']} dropped, {outcome['remaining']} left"
        + (f" ({outcome['error']})" if outcome["error"] else ""),
        file=out,
    )
    return EXIT_REFUSED if outcome["result"] == "failed" else 0


def telemetry_purge(api: Api, args: argparse.Namespace, out: TextIO, ask: Callable[[str], str]) -> int:
    if not api.call("GET", "/v1/telemetry")["queue"]["events"]:
        print("nothing queued; nothing to purge", file=out)
        return 0
    if not args.yes and ask("Delete every queued telemetry event? [y/N] ").strip().lower() not in ("y", "yes"):
        print("nothing purged", file=out)
        return 0
    result = api.call("DELETE", "/v1/telemetry/queue")
    print(f"purged {result['purged']} events", file=out)
    return 0


def telemetry_request_deletion(api: Api, args: argparse.Namespace, out: TextIO, ask: Callable[[str], str]) -> int:
    status = api.call("GET", "/v1/telemetry")
    question = f"Ask {status['registry_url']} to delete every contribution of client id {status['client_id']}? [y/N] "
    if not args.yes and ask(question).strip().lower() not in ("y", "yes"):
        print("nothing requested", file=out)
        return 0
    result = api.call("POST", "/v1/telemetry/deletion-request")
    if args.json:
        dump(result, out)
        return 0
    deleted = result["registry"].get("deleted") or {}
    print(
        f"the registry deleted {deleted.get('contributions', '?')} contributions ({deleted.get('events', '?')} events)",
        file=out,
    )
    return 0


COMMANDS: dict[tuple[str, str], Command] = {
    ("models", "list"): models_list,
    ("models", "register"): models_register,
    ("models", "activate"): models_activate,
    ("telemetry", "status"): telemetry_status,
    ("telemetry", "enable"): telemetry_enable,
    ("telemetry", "disable"): telemetry_disable,
    ("telemetry", "queue"): telemetry_queue,
    ("telemetry", "send"): telemetry_send,
    ("telemetry", "purge"): telemetry_purge,
    ("telemetry", "request-deletion"): telemetry_request_deletion,
    **cli_users.COMMANDS,
}


def run(
    args: argparse.Namespace, default_config: Path, out: TextIO = sys.stdout, ask: Callable[[str], str] = ask_terminal
) -> int:
    return run_command(args, default_config, COMMANDS, out, ask)
