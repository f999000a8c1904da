"""Feedback under load: wrk, 64 connections, POST /v1/feedback with fsync'd atomic writes.

Beside it, from the same run: a no-op aiohttp handler's rate (same wrk
settings), a plain Python loop of fsync'd atomic writes, and 64 threads of them
(what the disk gives at the benchmark's concurrency, with no HTTP). The server
runs with `service.workers: 1` and then `2` (this machine has two cores).
Targets (issue 28), with 1 worker: at least 0.8x the 64 threads' rate, p99 at
most 1.5x theirs; with 2 workers no worse than with 1 (0.95x, for noise);
always 0 errors and exactly as many files as 2xx replies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from common import REPO, data_volume, free_port, http, start_noop_server, start_server, stop

DURATION = os.environ.get("BENCH_DURATION", "10s")
CONNECTIONS = 64


@dataclass
class WrkResult:
    requests: int
    rate: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(port: int, body: dict[str, object], workdir: Path) -> WrkResult:
    script = workdir / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[{json.dumps(body)}]]\n'
    )
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{DURATION}",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/v1/feedback",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    latency = dict(re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)", out, re.M))

    def pct(key: str) -> float:
        match = re.match(r"([\d.]+)(\w+)", latency[key])
        assert match
        return _ms(match.group(1), match.group(2))

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        requests=int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        rate=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=pct("50"),
        p99_ms=pct("99"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(x) for x in errors.groups()) if errors else 0,
    )


def raw_atomic_write(folder: Path, number: int, payload: bytes) -> None:
    """The write protocol in plain Python: write, fsync, rename, fsync the directory."""
    tmp, final = folder / f".{number}.json.tmp", folder / f"{number}.json"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o640)
    os.write(fd, payload)
    os.fsync(fd)
    os.close(fd)
    tmp.replace(final)
    dfd = os.open(folder, os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)


def fsync_loop_rate(folder: Path, seconds: float = 3.0) -> float:
    """Plain Python: write, fsync, rename, fsync the directory, as fast as one loop can."""
    folder.mkdir()
    payload = b"x" * 400
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        raw_atomic_write(folder, count, payload)
        count += 1
    return count / (time.perf_counter() - started)


def threaded_writes(folder: Path, seconds: float = 5.0) -> tuple[float, float, float]:
    """Plain Python, 64 threads of fsync'd atomic writes (no HTTP): rate, p50 and p99 in ms.

    What the storage itself gives at the benchmark's concurrency.
    """
    folder.mkdir()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    def worker(first: int) -> None:
        number = first
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            raw_atomic_write(folder, number, b"x" * 400)
            latencies.append(time.perf_counter() - started)
            number += CONNECTIONS

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        list(pool.map(worker, range(CONNECTIONS)))
    latencies.sort()
    return (
        len(latencies) / seconds,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
    )


def server_2xx(port: int) -> int:
    metrics = http(port, "GET", "/metrics")
    match = re.search(
        r'lightspeed_http_requests_total\{method="POST",route="/v1/feedback",status="200"\} ([\d.]+)', metrics
    )
    return int(float(match.group(1))) if match else 0


@dataclass
class Measured:
    where: str
    workers: int
    noop: WrkResult
    loop_rate: float
    threaded: tuple[float, float, float]
    server: WrkResult
    files: int
    accepted: int
    leftovers: int

    @property
    def rate_ratio(self) -> float:
        return self.server.rate / self.threaded[0]

    @property
    def p99_ratio(self) -> float:
        return self.server.p99_ms / self.threaded[2]

    @property
    def lossless(self) -> bool:
        s = self.server
        return s.non_2xx == 0 and s.socket_errors == 0 and self.files == self.accepted and self.leftovers == 0

    @property
    def ok(self) -> bool:
        return self.rate_ratio >= 0.8 and self.p99_ratio <= 1.5 and self.lossless

    def report(self) -> None:
        n, s = self.noop, self.server
        print(f"-- on {self.where}, service.workers: {self.workers}")
        print(f"  baseline no-op aiohttp handler : {n.rate:8.0f} req/s  p50 {n.p50_ms:6.2f} ms  p99 {n.p99_ms:6.2f} ms")
        print(f"  baseline plain fsync write loop: {self.loop_rate:8.0f} writes/s (one thread)")
        rate, p50, p99 = self.threaded
        print(
            f"  baseline 64 threads fsync writes: {rate:7.0f} writes/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms (no HTTP)"
        )
        print(f"  lightspeed POST /v1/feedback   : {s.rate:8.0f} req/s  p50 {s.p50_ms:6.2f} ms  p99 {s.p99_ms:6.2f} ms")
        print(
            f"  ratio to the 64 threads: rate {self.rate_ratio:.2f}x (target >= 0.8x), p99 {self.p99_ratio:.2f}x"
            f" (target <= 1.5x); errors: non-2xx {s.non_2xx}, socket {s.socket_errors}; files {self.files},"
            f" server 2xx replies {self.accepted}, wrk-counted replies {s.requests}, temp files left"
            f" {self.leftovers}  -> {'PASS' if self.ok else 'FAIL'}"
        )


def measure(volume: Path, where: str, workers: int) -> Measured:
    with tempfile.TemporaryDirectory(dir=volume) as tmp:
        workdir = Path(tmp)
        port = free_port()
        noop = start_noop_server(port)
        try:
            baseline = run_wrk(port, {"x": 1}, workdir)
        finally:
            stop(noop)
        loop_rate = fsync_loop_rate(workdir / "loop")
        threaded = threaded_writes(workdir / "threads")
        port = free_port()
        # One document to answer the first question from: each worker builds its index at start.
        docs = workdir / "docs"
        docs.mkdir()
        shutil.copy(REPO / "docs" / "api.md", docs)
        server = start_server(workdir, docs, port, workers=workers)
        try:
            answer = http(port, "POST", "/v1/query", {"query": "How do I give feedback?"})
            body = {
                "conversation_id": answer["conversation_id"],
                "user_question": "How do I give feedback?",
                "llm_response": answer["response"][:1200],
                "sentiment": 1,
                "user_feedback": "Clear and correct.",
                "categories": ["other"],
            }
            result = run_wrk(port, body, workdir)
            time.sleep(1.0)  # requests wrk gave up on at its deadline still finish on the server
            accepted = server_2xx(port)
        finally:
            stop(server)
        feedback_dir = workdir / "feedback"
        files = len(list(feedback_dir.glob("*.json")))
        leftovers = len([p for p in feedback_dir.iterdir() if p.name.startswith(".")])
    return Measured(where, workers, baseline, loop_rate, threaded, result, files, accepted, leftovers)


def main() -> bool:
    print(f"== feedback: wrk -t2 -c{CONNECTIONS} -d{DURATION}, POST /v1/feedback, fsync'd atomic writes")
    with data_volume() as volume:
        one = measure(volume, "a dedicated ext4 data volume", workers=1)
        two = measure(volume, "a dedicated ext4 data volume", workers=2)
    one.report()
    two.report()
    scaling = two.server.rate / one.server.rate
    not_worse = scaling >= 0.95 and two.lossless
    print(
        f"  scaling, 1 -> 2 workers: {one.server.rate:.0f} -> {two.server.rate:.0f} req/s"
        f" ({scaling:.2f}x, target >= 0.95x), p99 {one.server.p99_ms:.1f} -> {two.server.p99_ms:.1f} ms"
        f"  -> {'PASS' if not_worse else 'FAIL'}"
    )
    where = "the root file system (mounted resv_strict: ~0.9 ms kernel CPU per file created)"
    measure(REPO / "bench", where, workers=1).report()
    print(
        f"  feedback (judged on the data volume: 1 worker's ratios, 2 workers not worse) -> "
        f"{'PASS' if one.ok and not_worse else 'FAIL'}"
    )
    return one.ok and not_worse


if __name__ == "__main__":
    main()
