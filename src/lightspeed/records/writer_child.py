"""The record writer process: records committed in groups, on its own threads, under its own GIL.

Run as `python -m lightspeed.records.writer_child COMMITTERS`. Requests arrive
on stdin, replies leave on stdout, both framed (see `frames`). Keeping the
fsync-bound work out of the server process means it never delays the event
loop.

Group commit: the requests that arrived while the previous group was being
committed form the next group. Its records are written to temp files, each
file's writeback started at once (sync_file_range), then each is fsynced: the
writes are already under way together, so the fsyncs share a few journal
commits instead of waiting on one each. Then the files are renamed into place
and each folder they went to is fsynced once; only then is the group answered,
in one write. A reply of success still means: the file and its directory entry
are on disk. One thread per group does it all; threads only hand the GIL over
between groups, not between records. Several committers (COMMITTERS) work at
once, so that while one group waits on its fsyncs the next is being written.
When stdin closes, the requests received are committed and answered before
the process exits.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from lightspeed.records.frames import pack_reply, read_request
from lightspeed_common.atomic import finish_temp, fsync_dir_if_present, publish, start_temp

Request = tuple[int, str, bytes]
Outcome = tuple[int, str]  # errno or 0, and the reason
OK: Outcome = (0, "")
# A group's size is bounded so that one group's replies do not wait on an unbounded number of writes, and
# its open temp files stay well inside the file descriptor limit (a committer holds a group's open at once).
GROUP_RECORDS = 128
GROUP_BYTES = 32 * 1024 * 1024


def _failure(exc: BaseException) -> Outcome:
    if isinstance(exc, OSError):
        return exc.errno or errno.EIO, exc.strerror or str(exc)
    return errno.EIO, f"{type(exc).__name__}: {exc}"


class GroupCommit:
    """Commits a group of records, on the calling thread: every temp file written and its writeback started,
    then each fsynced (the writes are already under way together, so the fsyncs share journal commits),
    renamed into place, and each folder fsynced once."""

    def __init__(self) -> None:
        self._owner = os.getpid()

    def commit(self, group: list[Request]) -> list[Outcome]:
        """Each request's outcome, in order; a success is durable when this returns."""
        outcomes: list[Outcome] = [OK] * len(group)
        started: list[tuple[int, Path, int]] = []
        # Folders that must be fsynced before the group is answered, and whose records fail if that fails:
        # each record's own, and those that gained a new folder (a new conversation's) on its way.
        folders: dict[Path, list[int]] = {}
        for index, (_, path, data) in enumerate(group):
            gained: list[Path] = []
            try:
                started.append((index, *start_temp(Path(path), data, 0o640, owner=self._owner, gained=gained)))
            except Exception as exc:
                outcomes[index] = _failure(exc)
            for folder in gained:  # also when the record failed: a folder it made may serve the next one
                folders.setdefault(folder, []).append(index)
        written: list[tuple[int, Path]] = []
        for index, tmp, fd in started:
            try:
                written.append((index, finish_temp(tmp, fd)))
            except Exception as exc:
                outcomes[index] = _failure(exc)
        for index, tmp in written:
            target = Path(group[index][1])
            try:
                publish(tmp, target)
            except Exception as exc:
                outcomes[index] = _failure(exc)
                continue
            folders.setdefault(target.parent, []).append(index)
        for folder, indexes in folders.items():
            try:
                fsync_dir_if_present(folder)
            except Exception as exc:  # renamed but maybe not durable: the client is told it failed, as it may have
                for index, (_, path, _) in enumerate(group):
                    if outcomes[index] == OK and (index in indexes or folder in Path(path).parents):
                        outcomes[index] = _failure(exc)
        return outcomes


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


def serve(committers: int, requests: BinaryIO, replies: BinaryIO) -> None:
    """Read requests until input ends; `committers` threads each commit a group at a time, so that while
    one group waits on its fsyncs the next is already being written."""
    received: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
    replying = threading.Lock()
    group_commit = GroupCommit()

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


def background_scheduling() -> None:
    """SCHED_BATCH for this process and the threads it starts: the same share of the CPU (the nice value is
    unchanged), but a request arriving does not preempt the server in the middle of its work; this process
    runs when a CPU comes free, or at the next scheduler tick. Under 64 connections of feedback the server's
    p99 fell from 1.58-1.74x to 1.27-1.42x the raw fsync loop's (bench/feedback_bench.py). Any user may
    choose it; where it cannot be had, the default policy stays."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def main() -> None:
    committers = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    background_scheduling()
    # Stop signals go to the whole unit (or terminal process group); the server
    # decides when writing ends by closing our stdin after its last request.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(committers, sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
