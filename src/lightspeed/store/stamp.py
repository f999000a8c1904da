"""How the processes sharing one SQLite store on one host notice each other's changes without asking it.

A change stamp is 8 bytes in a small file beside the database
(`conversations.sqlite3-changes`) that every process maps (mmap, shared). A
process that commits a change the others must see (a setting, a conversation
deleted or erased) puts a new random value there after its commit; a process
that caches what the store holds (the runtime settings, who owns which
conversation) compares the stamp with the value it saw when it last read the
store, and reads again only when they differ. The comparison is a memory read,
no system call and no trip to the store's thread: with several workers, each
request used to read the settings (and look its conversation's owner up) from
SQLite, which cost more than the rest of a feedback request.

Order makes it safe: a writer commits, then stamps; a reader looks at the stamp,
then reads. A reader that sees the new stamp reads at least that commit; one that
does not was, as far as anyone can tell, earlier than the change. A torn read
(a value half old, half new) only differs, which means one read more.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

SIZE = 8


class ChangeStamp:
    """The shared stamp of one database file (`<database>-changes`)."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + "-changes")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < SIZE:  # the first process to open it; a second one does the same, harmlessly
                os.ftruncate(fd, SIZE)
            self._map = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)

    def bump(self) -> None:
        """Tell every process sharing the store that it changed (after the commit)."""
        self._map[:SIZE] = os.urandom(SIZE)

    def read(self) -> bytes:
        return self._map[:SIZE]

    def close(self) -> None:
        self._map.close()


class Watch:
    """One cache's view of the stamp: `moved()` is True when the cache must be read again. Without a stamp
    (PostgreSQL: other hosts write and nothing tells) it always is."""

    def __init__(self, stamp: ChangeStamp | None) -> None:
        self._stamp = stamp
        self._seen: bytes | None = None

    def moved(self) -> bool:
        if self._stamp is None:
            return True
        now = self._stamp.read()
        if now == self._seen:
            return False
        self._seen = now
        return True

    def forget(self) -> None:
        """The read that followed `moved()` failed: the next `moved()` says so again."""
        self._seen = None
