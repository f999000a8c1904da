"""`lightspeed-collector [run] --config FILE [--once]` and `lightspeed-collector status --config FILE`.

Exit codes: 0 done (with --once: everything found was delivered), 1 something
was left undelivered or quarantined, 78 configuration error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from collector.daemon import STATUS_FILE, Collector, spool_dir, storage_roots
from collector.discovery import scan
from lightspeed.config import AppConfig, load_config
from lightspeed.errors import EXIT_CONFIG, ConfigError
from lightspeed.logs import configure_logging

log = structlog.get_logger("collector")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lightspeed-collector", description="Ship lightspeed records to ingress.")
    commands = parser.add_subparsers(dest="command")
    for name, text in (("run", "run the collector (the default)"), ("status", "show what is pending")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--config", type=Path, default=Path("/etc/lightspeed/lightspeed.yaml"))
        if name == "run":
            sub.add_argument("--once", action="store_true", help="one full pass, then exit")
    args = list(argv)
    if not args or args[0] not in ("run", "status", "-h", "--help"):
        args.insert(0, "run")
    return parser.parse_args(args)


def check_layout(config: AppConfig) -> str | None:
    """Why the directories cannot work (claiming is a rename), or None."""
    roots = storage_roots(config)
    if not roots:
        return "neither feedback_storage nor transcripts_storage is configured"
    spool = spool_dir(config)
    spool.mkdir(parents=True, exist_ok=True)
    devices = {spool.stat().st_dev} | {p.stat().st_dev for p in roots.values() if p.exists()}
    if len(devices) > 1:
        return f"the spool {spool} and the storage directories must be on one file system"
    return None


def _count(folder: Path) -> int:
    return len(list(folder.iterdir())) if folder.is_dir() else 0


def status(config: AppConfig) -> dict[str, Any]:
    spool = spool_dir(config)
    roots = storage_roots(config)
    records = scan(roots)
    oldest = None
    for record in records:
        with_age = (roots[record.kind] / record.relpath).stat().st_mtime
        oldest = with_age if oldest is None else min(oldest, with_age)
    saved: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads((spool / STATUS_FILE).read_text())
    return {
        "pending_records": len(records),
        "pending_bytes": sum(r.size for r in records),
        "oldest_pending_age_seconds": round(time.time() - oldest, 1) if oldest else None,
        "claimed_batches": _count(spool / "claimed"),
        "outbox_batches": len(list((spool / "outbox").glob("*.tar.gz"))),
        "quarantined": _count(spool / "quarantine"),
        "last_success": saved.get("last_success"),
        "last_error": saved.get("last_error"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"lightspeed-collector: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "status":
        print(json.dumps(status(config), indent=2))
        return 0
    if not config.user_data_collection.data_collector.enabled:
        print("lightspeed-collector: data_collector.enabled is false in the config; nothing to do")
        return 0
    problem = check_layout(config)
    if problem:
        print(f"lightspeed-collector: {args.config}: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    writer = configure_logging(config.logging.level, config.logging.format, identifier="lightspeed-collector")
    try:
        return Collector(config, once=args.once).run()
    finally:
        writer.close()


if __name__ == "__main__":
    sys.exit(main())
