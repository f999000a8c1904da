"""Crash-safe file writes. Synchronous: call only through a thread.

The write protocol is the server → collector contract: a reader that ignores
dot-files sees either no file or the whole file, never a part of one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a directory entry (a rename or a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """Create `path` and missing parents, fsyncing each parent that gained an entry."""
    if path.is_dir():
        return
    ensure_dir(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return
    fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write `data` to `path` so that it appears whole or not at all.

    Writes `.<name>.tmp` beside the target, fsyncs it, renames it over the
    target and fsyncs the directory. On any failure the temporary file is
    removed and the OSError propagates; the target is never half-written.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
