"""Issue 23's attacks, measured on the real daemons, each beside a baseline from the same run.

1. Another user's question while one user sends six ~900 KB questions (refused, 413), and while one
   user sends six questions of 100,000 made-up words with the length limit raised (typo repair bounded,
   two retrieval threads per user). Baseline: the same question alone.
2. The longest /liveness answer while a question with 54 attachments of 16 KiB is redacted. Baseline:
   the longest of 50 /liveness answers with nothing else running.
3. /readiness while PostgreSQL is down. Baseline: /readiness while it is up.
4. Four workers under 32 feedback clients, one killed: the slowest answer of the other workers after
   the kill. Baseline: the slowest answer before it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres import PostgresServer

from common import REPO, free_port, percentile, start_server, stop

QUESTION = {"query": "How do I enable feedback?"}


async def _timed(session: aiohttp.ClientSession, url: str, method: str = "GET", body: Any = None) -> tuple[int, float]:
    started = time.perf_counter()
    async with session.request(method, url, json=body) as resp:
        await resp.read()
        return resp.status, time.perf_counter() - started


def _made_up(count: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(6, 9))) for _ in range(count))


async def _question_beside(base: str, large: list[str]) -> tuple[float, float, list[int]]:
    """Alice's question alone (median of 5), then while mallory's large questions run: its latency."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        alone = sorted(
            [(await _timed(session, f"{base}/v1/query?user_id=alice", "POST", QUESTION))[1] for _ in range(5)]
        )
        heavy = [
            asyncio.ensure_future(_timed(session, f"{base}/v1/query?user_id=mallory", "POST", {"query": q}))
            for q in large
        ]
        await asyncio.sleep(0.5)  # they are in
        _, beside = await _timed(session, f"{base}/v1/query?user_id=alice", "POST", QUESTION)
        statuses = [status for status, _ in await asyncio.gather(*heavy)]
    return alone[2], beside, statuses


async def _liveness_beside(base: str, body: dict[str, Any]) -> tuple[float, float, int]:
    async with aiohttp.ClientSession() as session:
        idle = max([(await _timed(session, f"{base}/liveness"))[1] for _ in range(50)])
        request = asyncio.ensure_future(_timed(session, f"{base}/v1/query?user_id=alice", "POST", body))
        busiest = 0.0
        while not request.done():
            busiest = max(busiest, (await _timed(session, f"{base}/liveness"))[1])
        status, _ = await request
    return idle, busiest, status


def questions_and_attachments(workdir: Path) -> bool:
    docs = REPO / "docs"
    ok = True
    port = free_port()
    proc = start_server(workdir / "limits", docs, port)
    try:
        alone, beside, statuses = asyncio.run(_question_beside(f"http://127.0.0.1:{port}", ["hello " * 150_000] * 6))
    finally:
        stop(proc)
    print(f"  item 1: six 900 KB questions from one user: {sorted(set(statuses))} (413: refused at once)")
    print(f"          another user's question: {beside * 1000:.0f} ms beside them; alone {alone * 1000:.0f} ms")
    ok &= beside < 2.0
    port = free_port()
    raised = {"max_prompt_chars": 1_000_000, "max_attachments": 64, "max_attachments_bytes": 1_000_000}
    proc = start_server(workdir / "warm", docs, port, answers=raised, max_request_bytes=2_000_000)
    try:
        base = f"http://127.0.0.1:{port}"
        alone, beside, statuses = asyncio.run(_question_beside(base, [_made_up(100_000, i) for i in range(6)]))
        content = ("password=hunter2 token: abcdefgh " * 500)[: 16 * 1024 - 20] + " mail a@b.io"
        attachment = {"attachment_type": "log", "content_type": "text/plain", "content": content}
        idle, busiest, status = asyncio.run(_liveness_beside(base, {**QUESTION, "attachments": [attachment] * 54}))
    finally:
        stop(proc)
    print(f"          limit raised, six questions of 100,000 made-up words: {sorted(set(statuses))}")
    print(f"          another user's question: {beside * 1000:.0f} ms beside them; alone {alone * 1000:.0f} ms")
    print(f"  item 2: 54 attachments of 16 KiB ({status}): slowest /liveness {busiest * 1000:.1f} ms")
    print(f"          idle: slowest of 50 /liveness {idle * 1000:.1f} ms")
    ok &= beside < 2.0 and busiest < 0.1
    return ok


async def _readiness(base: str, count: int) -> list[tuple[int, float]]:
    async with aiohttp.ClientSession() as session:
        return [await _timed(session, f"{base}/readiness") for _ in range(count)]


def readiness_in_an_outage(workdir: Path) -> bool:
    database = PostgresServer()
    try:
        name = database.create_database()
        port = free_port()
        section = {
            "url": database.url(name),
            "password_file": str(database.password_file),
            "connect_timeout_seconds": 3,
        }
        proc = start_server(workdir / "outage", REPO / "docs", port, database=section)
        base = f"http://127.0.0.1:{port}"
        try:
            healthy = asyncio.run(_readiness(base, 20))
            database.stop("immediate")
            deadline = time.monotonic() + 60
            while asyncio.run(_readiness(base, 1))[0][0] != 503 and time.monotonic() < deadline:
                time.sleep(0.2)
            down = asyncio.run(_readiness(base, 20))
            database.start()
        finally:
            stop(proc)
    finally:
        database.close()
    worst_down = max(seconds for _, seconds in down)
    down_p50 = percentile([s for _, s in down], 0.5)
    print(
        f"  item 3: /readiness with PostgreSQL down: {sorted({s for s, _ in down})}, slowest {worst_down * 1000:.1f} ms"
    )
    print(f"          (p50 {down_p50 * 1000:.1f} ms); up: slowest {max(s for _, s in healthy) * 1000:.1f} ms")
    return worst_down < 1.0 and {s for s, _ in down} == {503}


async def _feedback_load(base: str, victim: int, clients: int = 32) -> tuple[list[float], list[float], int]:
    async with aiohttp.ClientSession() as session, session.post(f"{base}/v1/query?user_id=fb", json=QUESTION) as resp:
        conversation = (await resp.json())["conversation_id"]
    body = {"conversation_id": conversation, "user_question": "q", "llm_response": "a", "sentiment": 1}
    done: list[tuple[float, float, bool]] = []
    stop_at = asyncio.Event()

    async def client() -> None:
        async with aiohttp.ClientSession() as session:
            while not stop_at.is_set():
                started = time.perf_counter()
                try:
                    async with session.post(f"{base}/v1/feedback?user_id=fb", json=body) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                done.append((started, time.perf_counter() - started, ok))

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(5)
    killed = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    await asyncio.sleep(5)
    stop_at.set()
    await asyncio.gather(*tasks)
    before = [s for started, s, ok in done if ok and started + s < killed]
    after = [s for started, s, ok in done if ok and started + s >= killed]
    return before, after, sum(1 for _, _, ok in done if not ok)


def a_worker_killed(workdir: Path) -> bool:
    port = free_port()
    # The state directory of an earlier start: four workers building the docs/ index at once take minutes.
    proc = start_server(workdir / "warm", REPO / "docs", port, workers=4)
    try:
        log = (workdir / "warm" / "server.log").read_text()
        victim = next(
            int(line.split('"pid": ')[1].split(",")[0])
            for line in log.splitlines()
            if '"worker_started"' in line and '"worker": 1' in line
        )
        before, after, failed = asyncio.run(_feedback_load(f"http://127.0.0.1:{port}", victim))
    finally:
        stop(proc)
    print(
        f"  item 9: 32 feedback clients, one of 4 workers killed: slowest after {max(after) * 1000:.0f} ms"
        f" (p99 {percentile(after, 0.99) * 1000:.0f}); before: slowest {max(before) * 1000:.0f} ms"
        f" (p99 {percentile(before, 0.99) * 1000:.0f}); {failed} failed (the dead worker's)"
    )
    return max(after) < max(before) + 2.0 and failed <= 32


def main() -> bool:
    print("== attacks (issue 23): each beside a baseline from this run")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ok = questions_and_attachments(workdir)
        ok &= readiness_in_an_outage(workdir)
        ok &= a_worker_killed(workdir)
    print(f"  {'PASS' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
