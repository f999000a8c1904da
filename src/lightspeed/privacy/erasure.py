"""Erasing one user's data on this side (DESIGN.md §3, "Erasure"): their conversations in the store,
their records in the storage folders (a collector batch's manifest may list them), and a note that
tells the collector to do the rest.

The order makes a crash harmless: the note `<spool>/erasures/<user_hash>.json` is written first
(`server_done: false`), then the store's conversations and turns, the transcript folder
`<transcripts_storage>/<user_hash>/` and every feedback file whose `user_id` is the hash are
removed, then the note is rewritten with `server_done: true`, `erased_at` (records of the user written up to then
are the erased ones) and what was removed. A note still
`server_done: false` at start-up is run again: every step finds nothing left the second time.
The collector removes a note once it has dropped the user's records from its claimed and outbox
batches and shipped an `erasure` record.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from lightspeed.privacy.audit import audit
from lightspeed.store.queries import StateStore
from lightspeed_common.atomic import fsync_dir, write_atomic
from lightspeed_common.config import AppConfig
from lightspeed_common.records import FEEDBACK, TRANSCRIPT, Erasure, erasure_notes_dir, is_record_name

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Erased:
    """What one erasure removed, per place."""

    conversations: int = 0
    turns: int = 0
    transcripts: int = 0
    feedback: int = 0


def note_path(config: AppConfig, user_hash: str) -> Path:
    return erasure_notes_dir(config) / f"{user_hash}.json"


def write_note(path: Path, note: dict[str, object]) -> None:
    """Atomically, group-readable: the collector (same group, another user) reads and removes it."""
    write_atomic(path, json.dumps(note, sort_keys=True).encode(), mode=0o660)


def pending_notes(config: AppConfig) -> list[dict[str, object]]:
    """The notes whose server part is not done (blocking); unreadable ones are skipped and logged."""
    folder = erasure_notes_dir(config)
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            note = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            log.warning("erasure_note_unreadable", file=path.name, error=str(exc))
            continue
        if isinstance(note, dict) and not note.get("server_done") and isinstance(note.get("user_hash"), str):
            found.append(note)
    return found


def erase_transcripts(root: Path | None, user_hash: str) -> int:
    """Remove `<root>/<user_hash>/` (never through a symlink); the records it held."""
    folder = root / user_hash if root is not None else None
    if folder is None or folder.is_symlink() or not folder.is_dir():
        return 0
    removed = sum(1 for _, _, files in os.walk(folder) for name in files if is_record_name(name))
    # A record written into the folder meanwhile makes rmtree fail on the non-empty folder: again, and a
    # last failure propagates (the note stays `server_done: false`, and the next start tries again).
    for attempt in range(5):
        try:
            shutil.rmtree(folder)
            break
        except FileNotFoundError:
            break
        except OSError:
            if attempt == 4:
                raise
    fsync_dir(folder.parent)
    return removed


def erase_feedback(root: Path | None, user_hash: str) -> int:
    """Remove every feedback file in `root` whose `user_id` is `user_hash`."""
    if root is None or not root.is_dir():
        return 0
    needle = user_hash.encode()
    removed = 0
    with os.scandir(root) as entries:
        for entry in entries:
            if not is_record_name(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                record = Path(entry.path)
                data = record.read_bytes()
                if needle in data and json.loads(data).get("user_id") == user_hash:
                    record.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # shipped (or moved into a batch) by the collector meanwhile: its note covers it
            except ValueError:
                continue  # not JSON: the collector quarantines it, never ships it as someone's
    if removed:
        fsync_dir(root)
    return removed


class Eraser:
    def __init__(self, config: AppConfig, store: StateStore, hasher: Callable[[str], str]) -> None:
        self._config = config
        self._store = store
        self._hasher = hasher
        self._lock = asyncio.Lock()
        self._notes = erasure_notes_dir(config)  # once: the config's paths take a while to work out

    async def erase(self, user_id: str, requested_by: str) -> Erased:
        """`requested_by`: the user id of who asked (kept as its keyed hash in the audit trail)."""
        return await self.erase_hash(self._hasher(user_id), self._hasher(requested_by))

    async def erase_hash(self, user_hash: str, requested_by: str, requested_at: str | None = None) -> Erased:
        """Everything of `user_hash` on the server's side; the collector told through the note; audited."""
        path = note_path(self._config, user_hash)
        note: dict[str, object] = {
            "user_hash": user_hash,
            "requested_at": requested_at or datetime.now(UTC).isoformat(),
            "server_done": False,
        }
        async with self._lock:
            await asyncio.to_thread(write_note, path, note)
            conversations, turns = await self._store.erase_owner(user_hash)
            transcripts = await asyncio.to_thread(erase_transcripts, TRANSCRIPT.storage(self._config), user_hash)
            feedback = await asyncio.to_thread(erase_feedback, FEEDBACK.storage(self._config), user_hash)
            erased = Erased(conversations, turns, transcripts, feedback)
            done = {**note, "server_done": True, "erased_at": datetime.now(UTC).isoformat(), "erased": asdict(erased)}
            await asyncio.to_thread(write_note, path, done)
        log.info("user_data_erased", user_hash=user_hash, **asdict(erased))
        await audit(self._store, "erasure", user_hash, requested_by, asdict(erased))
        return erased

    def _note(self, user_hash: str) -> Path:
        return self._notes / f"{user_hash}.json"  # `note_path`, without working out the config's paths again

    async def covers_record(self, user_hash: str, written: datetime) -> bool:
        """`covers`, the common case answered on the event loop: no note of the user at all. That is one
        lookup of a name almost never there (microseconds); a thread hop costs more in wake-ups, and each
        transcript's check comes while the next question is being embedded."""
        if not os.path.lexists(self._note(user_hash)):  # noqa: ASYNC240 - one lookup, on purpose
            return False
        return await asyncio.to_thread(self.covers, user_hash, written)

    def covers(self, user_hash: str, written: datetime) -> bool:
        """Whether an erasure of `user_hash` covers a record written at `written` (blocking): its note, left by
        this server or a sibling worker, says so by the collector's rule (`records.Erasure.covers`). An
        unreadable note covers every record of the user, as it does for the collector, which drops them."""
        try:
            note = json.loads(self._note(user_hash).read_bytes())
        except FileNotFoundError:
            return False  # the common case: no erasure of this user
        except (OSError, ValueError):
            return True
        try:
            return Erasure.parse(note).covers(user_hash, written)
        except ValueError:
            return True

    async def replay(self) -> int:
        """Finish the erasures a stop interrupted; how many there were."""
        notes = await asyncio.to_thread(pending_notes, self._config)
        for note in notes:
            await self.erase_hash(str(note["user_hash"]), "start-up", str(note.get("requested_at") or "") or None)
        return len(notes)
