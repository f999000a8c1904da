"""Erasing one user (issue 26): what it costs beside a plain scan of the same data, in the same run.

The server's side: one user among 100,000 records on disk (50,000 feedback files in one folder, 50,000
transcripts in 1,000 users' folders) and 100,000 conversations in the SQLite store; the erasure (the
store's rows, the user's transcript folder, every feedback file read for its owner) beside a plain scan
that reads every record once, as `grep -r <hash>` would (target: within 2x of the scan, in time and in
peak memory). The ingest's side: one user's records rewritten out of 1,000 archives that each hold some
(the admin route, through a real ingest app), beside reading every archive once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sqlite3
import sys
import tarfile
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import aiohttp  # noqa: E402 - after the path
from aiohttp import web  # noqa: E402

from common import data_volume  # noqa: E402
from ingest.app import create_app as create_ingest_app  # noqa: E402
from lightspeed.privacy.erasure import Eraser  # noqa: E402
from lightspeed.store.sqlite import SQLiteStateStore  # noqa: E402
from lightspeed_common.config import config_from_mapping  # noqa: E402
from lightspeed_common.logs import configure_logging  # noqa: E402

T = TypeVar("T")
RECORDS = 100_000
CONVERSATIONS = 100_000
ARCHIVES = 1_000
PER_ARCHIVE = 50  # records in each archive, 2 of them the erased user's (and 2 the traced one's)
TARGET = 2.0
ERASED = "e" * 64  # erased with the clock running
TRACED = "d" * 64  # the same amount of data, erased with tracemalloc on (which slows Python down)


def owner(n: int) -> str:
    return f"{n % 1000:064x}"


def special(n: int) -> str | None:
    """Every 2000th item is the erased user's, the 1000th after it the traced one's."""
    return ERASED if n % 2000 == 0 else TRACED if n % 2000 == 1000 else None


def fill_records(feedback: Path, transcripts: Path) -> None:
    """50,000 feedback files and 50,000 transcripts; the erased user has 25 of each, the traced one too."""
    feedback.mkdir(parents=True)
    for n in range(RECORDS // 2):
        user = special(n) or owner(n)
        record = {"user_id": user, "timestamp": "2026-11-30 10:00:00+00:00", "conversation_id": "c", "sentiment": 1}
        (feedback / f"{uuid.uuid4()}.json").write_text(json.dumps(record))
    for n in range(RECORDS // 2):
        user = special(n) or owner(n)
        folder = transcripts / user / f"c{n % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        metadata = {"user_id": user, "conversation_id": f"c{n % 10}", "timestamp": "2026-11-30T10:00:00+00:00"}
        (folder / f"{uuid.uuid4()}.json").write_text(json.dumps({"metadata": metadata, "redacted_query": "q"}))


async def fill_store(path: Path) -> None:
    """100,000 conversations with one turn each (the erased user owns 50, the traced one too), in one
    transaction."""
    await SQLiteStateStore(path).close()  # the schema; the bulk insert goes beside the store
    moment = datetime.now(UTC).isoformat()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        rows = [(str(uuid.uuid4()), special(n) or owner(n)) for n in range(CONVERSATIONS)]
        db.executemany(
            "INSERT INTO conversations (conversation_id, owner, created_at, last_message_at, message_count) "
            "VALUES (?, ?, ?, ?, 1)",
            [(c, o, moment, moment) for c, o in rows],
        )
        db.executemany(
            "INSERT INTO turns (conversation_id, seq, question, answer, model, provider, started_at, completed_at, "
            "attachments) VALUES (?, 1, 'q', 'a', 'm', 'p', ?, ?, '[]')",
            [(c, moment, moment) for c, _ in rows],
        )


def plain_scan(*roots: Path) -> int:
    """Every record read once: what finding a user's data costs without an index."""
    found = 0
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                found += ERASED.encode() in Path(folder, name).read_bytes()
    return found


async def measured(
    timed: Callable[[], Awaitable[T]], traced: Callable[[], Awaitable[object]]
) -> tuple[T, float, float]:
    """`timed`'s result and wall seconds, and the peak Python memory (MB) of `traced`, its twin: tracemalloc
    slows allocation-heavy code down, so the clock never runs with it on."""
    started = time.perf_counter()
    result = await timed()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    await traced()
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return result, seconds, peak


async def server_side(volume: Path) -> bool:
    feedback, transcripts, state = volume / "feedback", volume / "transcripts", volume / "state"
    state.mkdir()
    fill_records(feedback, transcripts)
    await fill_store(state / "conversations.sqlite3")
    config = config_from_mapping(
        {
            "service": {"state_dir": str(state)},
            "user_data_collection": {"feedback_storage": str(feedback), "transcripts_storage": str(transcripts)},
        }
    )
    store = SQLiteStateStore(state / "conversations.sqlite3")
    eraser = Eraser(config, store, lambda user: user)

    async def scan() -> int:
        return await asyncio.to_thread(plain_scan, feedback, transcripts)

    found, scan_s, scan_mb = await measured(scan, scan)
    erased, erase_s, erase_mb = await measured(
        lambda: eraser.erase_hash(ERASED, "bench"), lambda: eraser.erase_hash(TRACED, "bench")
    )
    await store.close()
    print(f"   plain scan of {RECORDS:,} records: {scan_s:.2f} s, peak {scan_mb:.2f} MB ({found} of the user's)")
    print(
        f"   erasure: {erase_s:.2f} s ({erase_s / scan_s:.2f}x the scan), peak {erase_mb:.2f} MB; removed "
        f"{erased.conversations} conversations, {erased.turns} turns, {erased.transcripts} transcripts, "
        f"{erased.feedback} feedback among {CONVERSATIONS:,} conversations"
    )
    ok = erase_s <= TARGET * scan_s and erase_mb <= max(TARGET * scan_mb, 1.0)
    print(f"   target: within {TARGET}x of the scan in time and memory: {'PASS' if ok else 'FAIL'}")
    return ok


def archive(index: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for n in range(PER_ARCHIVE):
            user = ERASED if n < 2 else TRACED if n < 4 else owner(index * PER_ARCHIVE + n)
            data = json.dumps({"user_id": user, "timestamp": "2026-11-30T10:00:00Z", "user_feedback": "x" * 200})
            info = tarfile.TarInfo(f"feedback/{index}-{n}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data.encode()))
    return raw.getvalue()


def read_archives(folder: Path) -> int:
    members = 0
    for path in folder.rglob("*.tar.gz"):
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                extracted = tar.extractfile(member)
                members += extracted is not None and bool(extracted.read())
    return members


async def ingest_side(volume: Path) -> None:
    state = volume / "ingest"
    config = config_from_mapping(
        {"ingest": {"state_dir": str(state), "admin_key": "admin", "uploads": {"tokens": ["token"]}}}
    )
    runner = web.AppRunner(create_ingest_app(config))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for index in range(ARCHIVES):
                form = aiohttp.FormData()
                form.add_field(
                    "file",
                    archive(index),
                    filename="b.tar.gz",
                    content_type="application/vnd.redhat.lightspeed.periodic+tgz",
                )
                headers = {"Authorization": "Bearer token", "x-rh-insights-request-id": f"batch-{index}"}
                async with session.post(f"{base}/api/ingress/v1/upload", data=form, headers=headers) as resp:
                    assert resp.status == 202, await resp.text()

            async def read() -> int:
                return await asyncio.to_thread(read_archives, state / "archives")

            async def erase(user: str) -> Any:
                async with session.post(
                    f"{base}/api/admin/v1/erasures", json={"user_hash": user}, headers={"Authorization": "Bearer admin"}
                ) as resp:
                    return await resp.json()

            members, read_s, read_mb = await measured(read, read)
            erased, erase_s, erase_mb = await measured(lambda: erase(ERASED), lambda: erase(TRACED))
    finally:
        await runner.cleanup()
    print(f"   reading {ARCHIVES:,} archives ({members:,} records): {read_s:.2f} s, peak {read_mb:.2f} MB")
    print(
        f"   rewriting them without one user's records: {erase_s:.2f} s ({erase_s / read_s:.2f}x the reading), "
        f"peak {erase_mb:.2f} MB in this process; {erased['erased']}"
    )


def main() -> bool:
    configure_logging("warning", "console")  # the daemons' info lines would bury the figures
    print(f"== erasure: one user among {RECORDS:,} records and {CONVERSATIONS:,} conversations, and at the ingest")
    with data_volume("4G") as volume:
        ok = asyncio.run(server_side(volume))
        with tempfile.TemporaryDirectory(dir=volume) as folder:
            asyncio.run(ingest_side(Path(folder)))
    return ok


if __name__ == "__main__":
    main()
