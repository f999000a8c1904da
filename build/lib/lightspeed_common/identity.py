"""Who is running: the installation id every daemon reports, request ids, files created once and kept."""

from __future__ import annotations

import itertools
import secrets
import uuid
from pathlib import Path

from lightspeed_common.atomic import write_private

INSTALLATION_ID_FILE = "installation-id"


def read_or_create(path: Path, make: bytes, mode: int = 0o600) -> bytes:
    """The file's bytes; created first with `make` (atomically, with `mode`) when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        write_private(path, make, mode)
        return path.read_bytes()


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
    return read_or_create(state_dir / INSTALLATION_ID_FILE, str(uuid.uuid4()).encode(), mode=0o640).decode()
