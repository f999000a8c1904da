"""What `lightspeed-collector` runs once its arguments are parsed (`__main__` parses them without
loading any of this, so `--help` and `--version` answer at once): `run` and `status`."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

from collector.discovery import scan
from collector.erasures import ErasedUsers
from collector.spool import Spool
from lightspeed_common.config import AppConfig, load_config
from lightspeed_common.errors import EXIT_CONFIG, ConfigError
from lightspeed_common.records import RECORD_KINDS, erasure_notes_dir, spool_dir, storage_roots


def check_layout(config: AppConfig) -> str | None:
    """Why the directories cannot work (a record kept or quarantined moves there by rename), or None."""
    roots = storage_roots(config)
    if not roots:
        return f"none of {', '.join(kind.storage_key for kind in RECORD_KINDS)} is configured"
    spool = spool_dir(config)
    spool.mkdir(parents=True, exist_ok=True)
    devices = {spool.stat().st_dev} | {p.stat().st_dev for p in roots.values() if p.exists()}
    if len(devices) > 1:
        return f"the spool {spool} and the storage directories must be on one file system"
    return None


def _count(folder: Path) -> int:
    return len(list(folder.iterdir())) if folder.is_dir() else 0


def _stage(files: list[Path], now: float) -> dict[str, Any]:
    """Count, bytes and oldest age of the files waiting in one stage (files may leave while we look)."""
    stats = []
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            stats.append(path.stat())
    oldest = min((s.st_mtime for s in stats), default=None)
    return {
        "files": len(stats),
        "bytes": sum(s.st_size for s in stats),
        "oldest_age_seconds": round(now - oldest, 1) if oldest is not None else None,
    }


def status(config: AppConfig) -> dict[str, Any]:
    """What waits, by stage: new records in the storage folders, records claimed into a batch (its
    archive may be in the outbox, waiting to be accepted), quarantined batches, and erasures not yet shipped."""
    spool = Spool.for_config(config)
    roots = spool.roots
    now = time.time()
    claimed_dir = spool.claimed
    batches = [spool.sources(batch_id) for batch_id in spool.pending()]
    held = {member for sources in batches for member in sources}
    new = _stage([roots[r.kind] / r.relpath for r in scan(roots) if r.member not in held], now)
    claimed = _stage([Path(path) for sources in batches for path in sources.values()], now)
    outbox = _stage(sorted(spool.outbox.glob("*.tar.gz")), now)
    saved = spool.load_status()
    ages = [age for age in (new["oldest_age_seconds"], claimed["oldest_age_seconds"]) if age is not None]
    return {
        "pending_records": new["files"] + claimed["files"],
        "pending_bytes": new["bytes"] + claimed["bytes"],
        "oldest_pending_age_seconds": max(ages, default=None),
        "stages": {
            "new": {"records": new["files"], "bytes": new["bytes"], "oldest_age_seconds": new["oldest_age_seconds"]},
            "claimed": {
                "batches": _count(claimed_dir),
                "records": claimed["files"],
                "bytes": claimed["bytes"],
                "oldest_age_seconds": claimed["oldest_age_seconds"],
            },
            "outbox": {
                "batches": outbox["files"],
                "bytes": outbox["bytes"],
                "oldest_age_seconds": outbox["oldest_age_seconds"],
            },
        },
        "claimed_batches": _count(claimed_dir),
        "outbox_batches": outbox["files"],
        "quarantined": _count(spool.quarantine_dir),
        # Users the server erased whose erasure record has not reached the ingress yet (docs/privacy.md).
        "erasures_waiting": len(ErasedUsers.load(erasure_notes_dir(config)).erasures),
        "last_success": saved.get("last_success"),
        "last_error": saved.get("last_error"),
    }


def run_command(args: argparse.Namespace) -> int:
    """`run` or `status`, as parsed; the exit code."""
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
    # The daemon and its logging (aiohttp, watchfiles) only for `run`: `status` is what a health check runs.
    from collector.daemon import Collector  # noqa: PLC0415
    from lightspeed_common.logs import configure_logging  # noqa: PLC0415

    # What is loaded by now lives as long as the process: out of the garbage collector's sight, its full
    # passes (about 50 ms each over these modules' objects) go over what the run makes. A 100,000-record
    # drain spent 157 ms in them, 3.7 ms with this, and the interpreter's exit 66 ms less.
    gc.freeze()
    writer = configure_logging(config.logging.level, config.logging.format, identifier="lightspeed-collector")
    try:
        return Collector(config, once=args.once).run()
    finally:
        writer.close()
