"""Per-installation secrets and the keyed user hash.

Raw user ids never reach disk: records carry HMAC-SHA256(installation key,
user id). The key lives in the state directory, created once with mode 0600;
losing it only means new hashes for the same users.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import secrets
import uuid
from pathlib import Path

from lightspeed.atomic import write_private

KEY_FILE = "user-hash.key"
INSTALLATION_ID_FILE = "installation-id"


def _read_or_create(path: Path, make: bytes, mode: int = 0o600) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        write_private(path, make, mode)
        return path.read_bytes()


class UserHasher:
    """Maps a user id to the stable, keyed, non-reversible id stored in records."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the user hash key must be at least 32 bytes")
        self._key = key

    @classmethod
    def from_state_dir(cls, state_dir: Path) -> UserHasher:
        """Load the installation key, creating it on first start (blocking I/O)."""
        return cls(_read_or_create(state_dir / KEY_FILE, secrets.token_bytes(32)))

    def __call__(self, user_id: str) -> str:
        return hmac.new(self._key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


class UuidSource:
    """Random (version 4) UUIDs from a buffered block of os.urandom.

    One getrandom(2) call serves 256 UUIDs; on this kind of VM a syscall per
    uuid4() was a sixth of the event loop's time under load. Not thread-safe:
    use it from the event loop only.
    """

    BATCH = 256

    def __init__(self) -> None:
        self._pool = b""

    def __call__(self) -> uuid.UUID:
        if not self._pool:
            self._pool = os.urandom(16 * self.BATCH)
        raw, self._pool = self._pool[:16], self._pool[16:]
        return uuid.UUID(bytes=raw, version=4)


class RequestIds:
    """Process-unique request ids: a random per-process prefix and a counter, no syscall each."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._count = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"


def installation_id(state_dir: Path) -> str:
    """A random UUID naming this installation, created on first start (blocking I/O).

    Not a secret (the collector sends it in its User-Agent), so readable by the
    service group: the collector, a different user, reads the server's copy.
    Raises OSError when it neither exists nor can be created.
    """
    return _read_or_create(state_dir / INSTALLATION_ID_FILE, str(uuid.uuid4()).encode(), mode=0o640).decode()
