"""The record writer process: records committed in groups, on its own threads, under its own GIL.

Run as `python -m lightspeed.records.writer_child THREADS`. Requests arrive on
stdin, replies leave on stdout, both framed (see `frames`). Keeping the
fsync-bound threads out of the server process means their GIL hand-offs no
longer delay the event loop.

Group commit: the requests that arrived while the previous group was being
committed form the next group. Its records are written to temp files and
fsynced concurrently (the file system merges concurrent fsyncs into a few
journal commits), renamed into place, and each folder they went to is fsynced
once; only then is the group answered, in one write. A reply of success still
means: the file and its directory entry are on disk. When stdin closes, the
requests received are committed and answered before the process exits.
"""

from __future__ import annotations

import errno
import os
import queue
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from lightspeed.records.frames import pack_reply, read_request
from lightspeed_common.atomic import fsync_dir_if_present, publish, write_temp

Request = tuple[int, str, bytes]
Outcome = tuple[int, str]  # errno or 0, and the reason
OK: Outcome = (0, "")
# A group's size is bounded so that one group's replies do not wait on an unbounded number of writes.
GROUP_RECORDS = 256
GROUP_BYTES = 32 * 1024 * 1024
# Groups committed at once: while one waits on its fsyncs, the next is already being written.
COMMITTERS = 4


def _failure(exc: BaseException) -> Outcome:
    if isinstance(exc, OSError):
        return exc.errno or errno.EIO, exc.strerror or str(exc)
    return errno.EIO, f"{type(exc).__name__}: {exc}"


class GroupCommit:
    """Commits groups of records: temp files written and fsynced concurrently, renamed, folders fsynced once."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="record-writer")
        self._owner = os.getpid()

    def _write(self, request: Request) -> Path | Outcome:
        _, path, data = request
        try:
            return write_temp(Path(path), data, 0o640, owner=self._owner)
        except Exception as exc:
            return _failure(exc)

    @staticmethod
    def _sync(folder: Path) -> Outcome:
        try:
            fsync_dir_if_present(folder)
        except Exception as exc:
            return _failure(exc)
        return OK

    def commit(self, group: list[Request]) -> list[Outcome]:
        """Each request's outcome, in order; a success is durable when this returns."""
        written = list(self._pool.map(self._write, group)) if len(group) > 1 else [self._write(group[0])]
        outcomes: list[Outcome] = []
        folders: dict[Path, list[int]] = {}
        for index, ((_, path, _), tmp) in enumerate(zip(group, written, strict=True)):
            if not isinstance(tmp, Path):
                outcomes.append(tmp)
                continue
            target = Path(path)
            try:
                publish(tmp, target)
            except Exception as exc:
                outcomes.append(_failure(exc))
                continue
            outcomes.append(OK)
            folders.setdefault(target.parent, []).append(index)
        synced = list(self._pool.map(self._sync, folders)) if len(folders) > 1 else [self._sync(f) for f in folders]
        for indexes, outcome in zip(folders.values(), synced, strict=True):
            if outcome != OK:  # renamed but maybe not durable: the client is told it failed, as it may have
                for index in indexes:
                    outcomes[index] = outcome
        return outcomes

    def close(self) -> None:
        self._pool.shutdown()


def _groups(received: queue.SimpleQueue[Request | None]) -> Iterator[list[Request]]:
    """The requests waiting, as groups, until input has ended (the end mark is put back for the others)."""
    while True:
        first = received.get()
        if first is None:
            received.put(None)
            return
        group, size = [first], len(first[2])
        while len(group) < GROUP_RECORDS and size < GROUP_BYTES:
            try:
                more = received.get_nowait()
            except queue.Empty:
                break
            if more is None:
                received.put(None)
                break
            group.append(more)
            size += len(more[2])
        yield group


def serve(threads: int, requests: BinaryIO, replies: BinaryIO, committers: int = COMMITTERS) -> None:
    received: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
    replying = threading.Lock()
    group_commit = GroupCommit(threads)

    def commit_groups() -> None:
        for group in _groups(received):
            outcomes = group_commit.commit(group)
            frames = b"".join(pack_reply(r[0], *o) for r, o in zip(group, outcomes, strict=True))
            with replying:
                replies.write(frames)
                replies.flush()

    workers = [threading.Thread(target=commit_groups, name=f"record-group-{i}") for i in range(committers)]
    for worker in workers:
        worker.start()
    try:
        while (request := read_request(requests)) is not None:
            received.put(request)
    finally:
        received.put(None)
        for worker in workers:
            worker.join()
        group_commit.close()


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    # Stop signals go to the whole unit (or terminal process group); the server
    # decides when writing ends by closing our stdin after its last request.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(threads, sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
