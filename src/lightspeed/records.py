"""Transcript and feedback records: their formats and how they reach disk.

Formats follow lightspeed-stack so its downstream pipeline reads ours.
Feedback: `<feedback_storage>/<uuid4>.json`; transcripts:
`<transcripts_storage>/<user_hash>/<conversation_id>/<uuid4>.json`. Every write
is atomic (see `atomic.write_atomic`) and runs on the writer's own threads,
never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from lightspeed.atomic import ensure_dir, write_atomic
from lightspeed.errors import RecordWriteError, StorageError
from lightspeed.frames import REPLY, pack_request
from lightspeed.identity import UuidSource

RecordKind = Literal["feedback", "transcript"]
log = structlog.get_logger(__name__)
EXITED = "the record writer process exited"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Feedback:
    user_hash: str
    conversation_id: str
    user_question: str
    llm_response: str
    sentiment: int | None
    user_feedback: str | None
    categories: list[str] | None
    timestamp: datetime = field(default_factory=utc_now)

    def to_record(self) -> dict[str, Any]:
        return {
            "user_id": self.user_hash,
            # lightspeed-stack writes str(datetime): "2025-08-04 16:59:52.004143+00:00".
            "timestamp": str(self.timestamp),
            "conversation_id": self.conversation_id,
            "user_question": self.user_question,
            "llm_response": self.llm_response,
            "sentiment": self.sentiment,
            "user_feedback": self.user_feedback,
            "categories": self.categories,
        }


@dataclass(frozen=True)
class Transcript:
    user_hash: str
    conversation_id: str
    provider: str
    model: str
    query_provider: str | None
    query_model: str | None
    redacted_query: str
    llm_response: str
    rag_chunks: list[dict[str, Any]]
    truncated: bool
    attachments: list[dict[str, Any]]
    query_is_valid: bool = True
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_results: list[dict[str, Any]] = field(default_factory=list)
    timestamp: datetime = field(default_factory=utc_now)

    def to_record(self) -> dict[str, Any]:
        return {
            "metadata": {
                "provider": self.provider,
                "model": self.model,
                "query_provider": self.query_provider,
                "query_model": self.query_model,
                "user_id": self.user_hash,
                "conversation_id": self.conversation_id,
                "timestamp": self.timestamp.isoformat(),
            },
            "redacted_query": self.redacted_query,
            "query_is_valid": self.query_is_valid,
            "llm_response": self.llm_response,
            "rag_chunks": self.rag_chunks,
            "truncated": self.truncated,
            "attachments": self.attachments,
            "tool_calls": self.tool_calls,
            "tool_results": self.tool_results,
        }


def prepare_storage(what: str, path: Path) -> None:
    """Create a storage directory and prove it writable (blocking; run at start-up).

    Raises StorageError with the reason, so a bad directory stops the start
    instead of failing requests later.
    """
    try:
        ensure_dir(path)
        write_atomic(path / ".lightspeed-write-check", b"ok")
        (path / ".lightspeed-write-check").unlink()
    except OSError as exc:
        raise StorageError(what, path, exc.strerror or str(exc)) from exc


def remove_orphaned_temps(directories: list[Path], before: float) -> int:
    """Delete `.<name>.json.tmp` files last changed before `before` (a writer that died left them); how many.

    Removed, not finished: their writes were answered with an error (EIO), so
    the client was never told the record was stored and may have sent it
    again; finishing one could store it twice, and a temp file may be
    incomplete. Nothing promised is lost.
    """
    removed = 0
    for top in directories:
        for folder, _, names in os.walk(top):
            for name in names:
                if not (name.startswith(".") and name.endswith(".json.tmp")):
                    continue
                path = Path(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    if path.lstat().st_mtime < before:
                        path.unlink()
                        removed += 1
    return removed


class WriterProcess:
    """The server's end of the record writer process (`lightspeed.writer_child`).

    Started on first use and again after it died; a death fails the writes in
    flight with EIO (their records may or may not be on disk, never half-written).
    Before each start, the temp files a dead writer left in `directories` are removed.
    """

    def __init__(self, threads: int, directories: list[Path] | None = None) -> None:
        self._threads = threads
        self._directories = directories or []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[tuple[int, str]]] = {}
        self._ids = itertools.count(1)
        self._starting = asyncio.Lock()
        self._closing = False
        self._broken: asyncio.subprocess.Process | None = None

    async def _running(self) -> asyncio.subprocess.Process:
        async with self._starting:
            proc = self._proc
            dead = proc is None or proc is self._broken or proc.returncode is not None
            if proc is None or dead or self._reader is None or self._reader.done():
                await self._sweep(proc)
                proc = self._proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "lightspeed.writer_child",
                    str(self._threads),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
                self._reader = asyncio.create_task(self._read_replies(proc))
            return proc

    async def _sweep(self, previous: asyncio.subprocess.Process | None) -> None:
        """No write is in flight now: the old writer (if any) is made sure dead, then its temp files go."""
        if previous is not None and previous.returncode is None:
            previous.kill()
            await previous.wait()
        started = time.time()
        removed = await asyncio.to_thread(remove_orphaned_temps, self._directories, started)
        if removed:
            log.warning("record_temp_files_removed", removed=removed, reason="left by a writer that stopped")

    async def write(self, path: Path, data: bytes) -> None:
        """Write `path` atomically; raises OSError as the write itself would."""
        proc = await self._running()
        assert proc.stdin is not None
        request_id = next(self._ids)
        reply = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply
        try:
            proc.stdin.write(pack_request(request_id, str(path), data))
            await proc.stdin.drain()
            error, reason = await reply
        except ConnectionError:
            # The pipe broke before the reader saw the exit: the next write must not reuse this process.
            self._broken = proc
            error, reason = errno.EIO, EXITED
        finally:
            self._pending.pop(request_id, None)
        if error:
            raise OSError(error, reason, str(path))

    async def _read_replies(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while True:
                header = await proc.stdout.readexactly(REPLY.size)
                request_id, error, length = REPLY.unpack(header)
                reason = (await proc.stdout.readexactly(length)).decode("utf-8", errors="replace")
                reply = self._pending.pop(request_id, None)
                if reply is not None and not reply.done():
                    reply.set_result((error, reason))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if not self._closing:
                log.error("record_writer_exited", returncode=await proc.wait(), pending=len(self._pending))
            for reply in self._pending.values():
                if not reply.done():
                    reply.set_result((errno.EIO, EXITED))

    async def close(self, grace_seconds: float = 10.0) -> None:
        """Let the writes in progress finish, then end the process."""
        self._closing = True
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), grace_seconds)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            await self._reader


class RecordWriter:
    """Writes records atomically in the record writer process.

    `on_result(kind, ok)` is called for every attempt (metrics).
    """

    def __init__(
        self,
        feedback_dir: Path | None,
        transcripts_dir: Path | None,
        threads: int,
        on_result: Callable[[RecordKind, bool], None] = lambda kind, ok: None,
    ) -> None:
        self._feedback_dir = feedback_dir
        self._transcripts_dir = transcripts_dir
        self._process = WriterProcess(threads, [d for d in (feedback_dir, transcripts_dir) if d is not None])
        self._on_result = on_result
        self._names = UuidSource()

    async def write_feedback(self, feedback: Feedback) -> Path:
        if self._feedback_dir is None:
            raise RecordWriteError("feedback", "no feedback_storage is configured")
        path = self._feedback_dir / f"{self._names()}.json"
        return await self._write("feedback", path, feedback.to_record())

    async def write_transcript(self, transcript: Transcript) -> Path:
        if self._transcripts_dir is None:
            raise RecordWriteError("transcript", "no transcripts_storage is configured")
        directory = self._transcripts_dir / transcript.user_hash / transcript.conversation_id
        path = directory / f"{self._names()}.json"
        return await self._write("transcript", path, transcript.to_record())

    async def _write(self, kind: RecordKind, path: Path, record: dict[str, Any]) -> Path:
        data = json.dumps(record, ensure_ascii=False).encode("utf-8")
        try:
            await self._process.write(path, data)
        except OSError as exc:
            self._on_result(kind, False)
            raise RecordWriteError(kind, exc.strerror or str(exc)) from exc
        self._on_result(kind, True)
        return path

    async def close(self) -> None:
        """Wait for the writes in progress: a record accepted is a record on disk."""
        await self._process.close()
