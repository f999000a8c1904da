"""Per-installation user hashing.

Raw user ids never reach disk: records carry HMAC-SHA256(installation key,
user id). The key lives in the state directory, created once with mode 0600;
losing it only means new hashes for the same users.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from lightspeed_common.identity import read_or_create

KEY_FILE = "user-hash.key"


class UserHasher:
    """Maps a user id to the stable, keyed, non-reversible id stored in records."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the user hash key must be at least 32 bytes")
        self._key = key

    @classmethod
    def from_state_dir(cls, state_dir: Path) -> UserHasher:
        """Load the installation key, creating it on first start (blocking I/O)."""
        return cls(read_or_create(state_dir / KEY_FILE, secrets.token_bytes(32)))

    def __call__(self, user_id: str) -> str:
        return hmac.new(self._key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()
