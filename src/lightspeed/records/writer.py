"""How records reach disk: the writer the handlers call, and its end of the writer process.

Where each kind lives is `lightspeed_common.records`; what is in it is
`formats`. Every write is atomic (see `atomic.write_atomic`) and runs in the
record writer process (`writer_child`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from lightspeed.records.formats import Feedback, Transcript
from lightspeed.records.frames import REPLY, pack_request
from lightspeed_common.atomic import ensure_dir, write_atomic
from lightspeed_common.errors import RecordWriteError, StorageError
from lightspeed_common.records import FEEDBACK, TRANSCRIPT, KindName, RecordKind

log = structlog.get_logger(__name__)
EXITED = "the record writer process exited"


def prepare_storage(what: str, path: Path) -> None:
    """Create a storage directory and prove it writable (blocking; run at start-up).

    Raises StorageError with the reason, so a bad directory stops the start
    instead of failing requests later.
    """
    try:
        ensure_dir(path)
        check = path / f".lightspeed-write-check-{os.getpid()}"  # several workers check at once
        write_atomic(check, b"ok")
        check.unlink()
    except OSError as exc:
        raise StorageError(what, path, exc.strerror or str(exc)) from exc


# `.<name>.json.<pid>.tmp`: a writer process's temp file, named by its pid.
_OWNED_TEMP = re.compile(r"\..+\.json\.(\d+)\.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _orphaned(path: Path, before: float) -> bool:
    """A temp file whose writer is gone: its pid no longer runs (several workers share the folders, and a
    live sibling's write in progress must be left alone), or, unnamed, it was last changed before `before`."""
    owned = _OWNED_TEMP.fullmatch(path.name)
    if owned:
        return not _alive(int(owned[1]))
    return path.name.startswith(".") and path.name.endswith(".json.tmp") and path.lstat().st_mtime < before


def remove_orphaned_temps(directories: list[Path], before: float) -> int:
    """Delete the temp files of writers that died (`.<name>.json.<pid>.tmp` whose pid is gone; an
    unnamed `.<name>.json.tmp` last changed before `before`); how many.

    Removed, not finished: their writes were answered with an error (EIO), so
    the client was never told the record was stored and may have sent it
    again; finishing one could store it twice, and a temp file may be
    incomplete. Nothing promised is lost.
    """
    removed = 0
    for top in directories:
        for folder, _, names in os.walk(top):
            for name in names:
                if not (name.startswith(".") and name.endswith(".tmp")):
                    continue
                path = Path(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    if _orphaned(path, before):
                        path.unlink()
                        removed += 1
    return removed


class WriterProcess:
    """The server's end of the record writer process (`lightspeed.records.writer_child`).

    Started on first use and again after it died; a death fails the writes in
    flight with EIO (their records may or may not be on disk, never half-written).
    Before each start, the temp files a dead writer left in `directories` are removed.
    """

    def __init__(self, committers: int, directories: list[Path] | None = None) -> None:
        self._committers = committers
        self._directories = directories or []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[tuple[int, str]]] = {}
        self._outbox: list[bytes] = []
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
                    "lightspeed.records.writer_child",
                    str(self._committers),
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
        loop = asyncio.get_running_loop()
        reply = loop.create_future()
        self._pending[request_id] = reply
        try:
            # The requests made in one turn of the event loop go to the process in one write.
            if not self._outbox:
                loop.call_soon(self._send)
            self._outbox.append(pack_request(request_id, str(path), data))
            if self._reader is None or self._reader.done():  # it would never answer: the process is gone
                reply.set_result((errno.EIO, EXITED))
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

    def _send(self) -> None:
        """To the process running now: after a restart, a request queued for the dead one (already answered
        with EIO, which promises nothing) may still be written."""
        frames, self._outbox, proc = self._outbox, [], self._proc
        if frames and proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(b"".join(frames))

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
        self._send()
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
        committers: int,
        on_result: Callable[[KindName, bool], None] = lambda kind, ok: None,
    ) -> None:
        self._feedback_dir = feedback_dir
        self._transcripts_dir = transcripts_dir
        self._process = WriterProcess(committers, [d for d in (feedback_dir, transcripts_dir) if d is not None])
        self._on_result = on_result

    async def write_feedback(self, feedback: Feedback) -> Path:
        return await self._write(FEEDBACK, self._feedback_dir, feedback.to_record())

    async def write_transcript(self, transcript: Transcript) -> Path:
        return await self._write(TRANSCRIPT, self._transcripts_dir, transcript.to_record())

    async def _write(self, kind: RecordKind, root: Path | None, record: dict[str, Any]) -> Path:
        """`record` where its kind says (`RecordKind.path`), atomically, in the writer process."""
        if root is None:
            raise RecordWriteError(kind.name, f"no {kind.storage_key} is configured")
        path = kind.path(root, record, str(uuid.uuid4()))
        data = json.dumps(record, ensure_ascii=False).encode("utf-8")
        try:
            await self._process.write(path, data)
        except OSError as exc:
            self._on_result(kind.name, False)
            raise RecordWriteError(kind.name, exc.strerror or str(exc)) from exc
        self._on_result(kind.name, True)
        return path

    async def close(self) -> None:
        """Wait for the writes in progress: a record accepted is a record on disk."""
        await self._process.close()
