"""Crash-safe file writes. Synchronous: call only through a thread.

The write protocol is the server → collector contract: a reader that ignores
dot-files sees either no file or the whole file, never a part of one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def mark_migrated(path: Path) -> None:
    """Rename a file imported by a newer release to `<name>.migrated` (kept, never read again), durably."""
    path.rename(path.with_name(path.name + ".migrated"))
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a directory entry (a rename or a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> list[Path]:
    """Create `path` and missing parents, without an fsync: the folders that gained an entry, outermost
    first, which must be fsynced before anything relies on the new folders lasting."""
    if path.is_dir():
        return []
    gained = make_dirs(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return gained
    return [*gained, path.parent]


def ensure_dir(path: Path) -> None:
    """Create `path` and missing parents, fsyncing each parent that gained an entry."""
    for parent in make_dirs(path):
        fsync_dir(parent)


_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(path: Path) -> None:
    """Flush everything pending on the file system holding `path` (Linux syncfs(2)).

    For batch operations (the collector moving thousands of records across
    thousands of folders): one flush instead of an fsync per directory.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def _open_new(tmp: Path, mode: int, gained: list[Path] | None) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        return os.open(tmp, flags, mode)
    except FileNotFoundError:
        # The first record of a new conversation: create its folders, then try again.
        if gained is None:
            ensure_dir(tmp.parent)
        else:
            gained += make_dirs(tmp.parent)
        return os.open(tmp, flags, mode)


def _start_writeback(fd: int) -> None:
    """Ask the kernel to start writing `fd`'s dirty pages now, without waiting (Linux sync_file_range(2)
    with SYNC_FILE_RANGE_WRITE): the fsyncs of a group that follow then find the writes under way together
    and share journal commits. Only a hint; durability is still the fsync's."""
    if _sync_file_range is not None:
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = (ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint)


def _temp_name(path: Path, owner: int | None) -> Path:
    return path.with_name(f".{path.name}.tmp" if owner is None else f".{path.name}.{owner}.tmp")


def _discard(tmp: Path, fd: int) -> None:
    os.close(fd)
    with contextlib.suppress(OSError):
        tmp.unlink()


def start_temp(
    path: Path, data: bytes, mode: int = 0o640, owner: int | None = None, gained: list[Path] | None = None
) -> tuple[Path, int]:
    """Write `data` to a temporary file beside `path` (creating missing folders) and start its writeback;
    the temp file and its open descriptor, for `finish_temp`. Not yet durable.

    The file is `.<name>.tmp`, or `.<name>.<owner>.tmp` with an owner (the
    writing process's pid, so that a sweep of orphans can tell whose it is).
    Folders it creates are fsynced at once, or, given `gained`, added to it
    for the caller to fsync (a group's new folders, synced together).
    On any failure it is removed and the OSError propagates.
    """
    tmp = _temp_name(path, owner)
    fd = _open_new(tmp, mode, gained)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        _start_writeback(fd)
    except BaseException:
        _discard(tmp, fd)
        raise
    return tmp, fd


def finish_temp(tmp: Path, fd: int) -> Path:
    """fsync and close a temp file from `start_temp`; its path. On failure it is removed and the OSError
    propagates."""
    try:
        os.fsync(fd)
    except BaseException:
        _discard(tmp, fd)
        raise
    os.close(fd)
    return tmp


def write_temp(path: Path, data: bytes, mode: int = 0o640, owner: int | None = None) -> Path:
    """`start_temp` then `finish_temp`: the temp file beside `path`, written and fsynced."""
    return finish_temp(*start_temp(path, data, mode, owner))


def publish(tmp: Path, path: Path) -> None:
    """Rename a written temp file over `path` (not yet durable: fsync the folder after). On failure the
    temp file is removed and the OSError propagates; `path` is never half-written."""
    try:
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def fsync_dir_if_present(path: Path) -> None:
    """`fsync_dir`, except that a folder already gone is fine: the collector claimed its records and
    pruned it, after making their renames durable itself (syncfs)."""
    with contextlib.suppress(FileNotFoundError):
        fsync_dir(path)


def write_atomic(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write `data` to `path` so that it appears whole or not at all, durably.

    `write_temp`, `publish` (rename over the target), then fsync the directory.
    On any failure the temporary file is removed and the OSError propagates.
    """
    publish(write_temp(path, data, mode), path)
    fsync_dir_if_present(path.parent)


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Atomically replace a small state file, by default readable by the service only (blocking)."""
    ensure_dir(path.parent)
    write_atomic(path, data, mode=mode)


@contextlib.contextmanager
def private_output(path: Path) -> Iterator[BinaryIO]:
    """A file to stream a user's data into (mode 0600 from the start): written as `.<name>.tmp` beside
    `path` and moved in place when the block ends without an error; otherwise removed, so `path` is
    whole or absent."""
    partial = path.with_name(f".{path.name}.tmp")
    try:
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as sink:
            yield sink
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def read_lines(path: Path) -> list[str]:
    """A text file's lines; none when it does not exist (blocking)."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def append_lines(path: Path, lines: list[str], mode: int = 0o600) -> None:
    """Append whole lines with one write and one fdatasync (blocking).

    A crash mid-write can leave a torn last line; readers skip it.
    """
    ensure_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        data = memoryview("".join(line + "\n" for line in lines).encode("utf-8"))
        while data:  # a short write happens only when the disk fills; the rest raises next
            data = data[os.write(fd, data) :]
        os.fdatasync(fd)
    finally:
        os.close(fd)
