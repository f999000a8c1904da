"""Helpers the tests share (not fixtures)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import signal
import socket
import sqlite3
import struct
import termios
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


async def transcripts_written(client: Any) -> None:
    """The transcripts of the answers given so far are on disk (or failed): the server answers while the
    record writer fsyncs a transcript (lightspeed.turns)."""
    from lightspeed.api.state import SERVER  # here: the collector's tests import this module too

    await client.server.app[SERVER].turns.settled()


def writer_processes() -> list[int]:
    """The record writer processes this test process started (an app's, started on its first record)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and b"lightspeed.records.writer_child" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
    return found


@contextlib.asynccontextmanager
async def writer_stopped(client: Any) -> AsyncIterator[None]:
    """The app's record writer process held stopped (SIGSTOP) inside the block: it writes nothing until the
    block ends. One question is answered first, to start the writer (its transcript written)."""
    before = set(writer_processes())  # another app's, if one is still open in this process
    assert (await client.post("/v1/query", json={"query": "start the server"})).status == 200
    await transcripts_written(client)
    [writer] = set(writer_processes()) - before
    os.kill(writer, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(writer, signal.SIGCONT)


async def asked_while_a_transcript_is_written(client: Any, method: str, path: str) -> Any:
    """The response to `method path` (as `?user_id=alice`) asked right after alice's answer, while its
    transcript is still being written (the writer held stopped): the request must wait for it."""
    async with writer_stopped(client):
        assert (await client.post("/v1/query?user_id=alice", json={"query": "install"})).status == 200
        asked = asyncio.ensure_future(client.request(method, f"{path}?user_id=alice"))
        done, _ = await asyncio.wait({asked}, timeout=2)
        assert not done  # it waits for the transcript the stopped writer holds
    return await asked


def json_files(folder: Path) -> list[Path]:
    """Finished records below `folder`: what a collector would pick up."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*.json") if not p.name.startswith("."))


def fill_up(folder: Path) -> None:
    """Fill the file system holding `folder` to the last byte."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def link_model(target: Path, *, normalize: bool = True, weights: bytes | None = None) -> Path:
    """A model directory made of the packaged MiniLM's files (linked), optionally altered."""
    from lightspeed.models.embedding import default_model_path

    source = default_model_path()
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name in ("modules.json", "model.safetensors") and (not normalize or weights is not None):
            continue
        (target / item.name).symlink_to(item)
    if not normalize:
        modules = [m for m in json.loads((source / "modules.json").read_text()) if "Normalize" not in m["type"]]
        (target / "modules.json").write_text(json.dumps(modules))
    elif weights is not None:
        (target / "modules.json").symlink_to(source / "modules.json")
    if weights is not None:
        (target / "model.safetensors").write_bytes(weights)
    elif not normalize:
        (target / "model.safetensors").symlink_to(source / "model.safetensors")
    return target


ARTIFACTS = Path(os.environ.get("LIGHTSPEED_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))


async def screenshot(page: Any, folder: str, name: str) -> None:
    """Save a full-page screenshot under test-artifacts/<folder>/ for a human to look at after a run."""
    target = ARTIFACTS / folder
    target.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(target / f"{name}.png"), full_page=True)


async def liveness_latencies_during(client: Any, task: asyncio.Future[Any]) -> list[float]:
    """Ask /liveness in a loop until `task` is done; how long each answer took (the event loop's pauses)."""
    latencies: list[float] = []
    while not task.done():
        started = time.perf_counter()
        resp = await client.get("/liveness")
        assert resp.status == 200
        latencies.append(time.perf_counter() - started)
    return latencies


async def loop_pause_bound(client: Any) -> float:
    """The longest /liveness may take while other work runs without holding the event loop: 0.3 s, or
    five times the slowest of 20 answers on this machine now when that is more. A machine loaded by other
    work (CI, the suite's other process) is slow everywhere; work on the loop stalls it for seconds."""
    slowest = 0.0
    for _ in range(20):
        started = time.perf_counter()
        assert (await client.get("/liveness")).status == 200
        slowest = max(slowest, time.perf_counter() - started)
    return max(0.3, 5 * slowest)


def open_descriptors(pid: int) -> int:
    """How many file descriptors process `pid` holds."""
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


async def until(condition: Callable[[], Awaitable[bool]], what: str, seconds: float = 60) -> None:
    """Poll an observable condition (a file, a row, a counter) until it holds; fail naming `what` after `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not seen within {seconds} s: {what}")
        await asyncio.sleep(0.02)


def http_request(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    """One HTTP/1.1 request as its bytes, for a raw connection (kept alive, as clients do)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def leave_after_the_status_line(client: Any, request: bytes, logs: list[dict[str, Any]]) -> bytes:
    """Send `request` (`http_request`) on a raw connection to `client`'s server, read the response's head,
    then reset the connection (the client leaves while the body is still coming); wait until the server has
    logged the request's `request_handled` line in `logs` (structlog's capture_logs). Returns the head.

    The handler is not cancelled when its client leaves, as under `lightspeed serve` and
    `lightspeed-ingest serve` (aiohttp's default; its test server turns cancelling on): its next write fails."""
    runner = client.server.runner
    assert runner is not None
    assert runner.server is not None
    runner.server.handler_cancellation = False
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(request)
    head: bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()  # with a reset: unread data was waiting

    async def handled() -> bool:
        return any(e["event"] == "request_handled" for e in logs)

    await until(handled, "the request_handled line")
    return head


async def assert_left_midway(client: Any, logs: list[dict[str, Any]], prefix: str, route: str) -> None:
    """A client that left is one info line, not a failure, and the status sent stays the one logged; the
    daemon's metrics (`prefix`) count it as a client that left."""
    assert not [e for e in logs if e["event"] == "request_failed"], logs
    cut = [e for e in logs if e["event"] == "response_cut_short"]
    assert len(cut) == 1, logs
    assert cut[0]["log_level"] == "info"
    assert cut[0]["route"] == route
    assert cut[0]["reason"] == "the client closed the connection"
    assert [e["status"] for e in logs if e["event"] == "request_handled"] == [200]
    metrics = await (await client.get("/metrics")).text()
    counted = f'{prefix}_http_responses_cut_short_total{{cause="client_left",method="GET",route="{route}"}} 1.0'
    assert counted in metrics, metrics


class Background:
    """aiohttp applications served from a thread of their own, for a server in another process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._runners: list[web.AppRunner] = []

    def serve(self, app: web.Application) -> int:
        async def start() -> int:
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._runners.append(runner)
            return int(runner.addresses[0][1])

        return asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)

    def close(self) -> None:
        async def stop() -> None:
            for runner in self._runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


DATA = Path(__file__).resolve().parent / "data"


def restore_dump(path: Path, dump: str) -> None:
    """A SQLite file from an `sqlite3 .dump` in tests/data (a file as an earlier release wrote it)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript((DATA / dump).read_text())


def sqlite_schema(path: Path) -> tuple[int, dict[str, str]]:
    """A SQLite file's version and its tables and indexes, each statement with its whitespace normalised."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        rows = db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    normal = {name: " ".join(sql.replace("IF NOT EXISTS ", "").split()) for name, sql in rows}
    return version, normal


async def on_terminal(command: list[str], stdout: Path, cwd: Path | None = None) -> tuple[int, str]:
    """Run `command` with its standard error on a pseudo-terminal (100 columns) and its standard output in
    the file `stdout`, as a person's shell would with `> file`; its exit code and what the terminal showed.
    Outside systemd: JOURNAL_STREAM and INVOCATION_ID are not passed on."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "INVOCATION_ID")}
    with stdout.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*command, cwd=cwd, stdout=out, stderr=follower, env=env)
    os.close(follower)

    def screen() -> bytes:
        """What the terminal shows until the process closes it (the event loop serves meanwhile)."""
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the process is gone
                return seen
            if not chunk:
                return seen
            seen += chunk

    try:
        text = (await asyncio.to_thread(screen)).decode(errors="replace")
    finally:
        os.close(leader)
    return await asyncio.wait_for(proc.wait(), 120), text
