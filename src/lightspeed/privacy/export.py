"""Exporting one user's data on this side (their access request): their conversations with every
turn, and their feedback and transcripts not yet shipped, as one JSON document, made a piece at a
time so a long history never sits in memory whole.

    {"user_id": ..., "exported_at": ...,
     "conversations": [{...conversation, "turns": [...]}, ...],
     "feedback": [<record as written>, ...],
     "transcripts": [<record as written>, ...]}
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lightspeed.store.conversations import ConversationStore
from lightspeed_common.config import AppConfig
from lightspeed_common.records import FEEDBACK, TRANSCRIPT, is_record_name

# Records read per trip to a thread.
CHUNK = 64


def feedback_of(root: Path | None, user_hash: str) -> Iterator[bytes]:
    """The feedback records in `root` whose `user_id` is `user_hash`, as written (blocking)."""
    if root is None or not root.is_dir():
        return
    needle = user_hash.encode()
    with os.scandir(root) as entries:
        for entry in entries:
            if is_record_name(entry.name) and entry.is_file(follow_symlinks=False):
                data = _read(Path(entry.path))
                if data is not None and needle in data and _owner(data) == user_hash:
                    yield data


def transcripts_of(root: Path | None, user_hash: str) -> Iterator[bytes]:
    """The transcripts under `<root>/<user_hash>/` (blocking); never through a symlink."""
    folder = root / user_hash if root is not None else None
    if folder is None or folder.is_symlink() or not folder.is_dir():
        return
    for directory, _, files in os.walk(folder):
        for name in sorted(files):
            path = Path(directory) / name
            if is_record_name(name) and not path.is_symlink() and (data := _read(path)) is not None and _valid(data):
                yield data


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None  # shipped by the collector meanwhile


def _valid(data: bytes) -> bool:
    """JSON, so the document stays JSON (a file that is not is the collector's to quarantine)."""
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _owner(data: bytes) -> Any:
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record.get("user_id") if isinstance(record, dict) else None


async def _chunks(records: Iterator[bytes]) -> AsyncIterator[list[bytes]]:
    while chunk := await asyncio.to_thread(lambda: [r for _, r in zip(range(CHUNK), records, strict=False)]):
        yield chunk


async def export_document(
    config: AppConfig, store: ConversationStore, user_id: str, user_hash: str, counts: dict[str, int]
) -> AsyncIterator[bytes]:
    """The document's bytes, piece by piece; `counts` gets how many of each part it held."""
    head = {"user_id": user_id, "exported_at": datetime.now(UTC).isoformat()}
    # Asked before the first piece: a store that cannot answer is the caller's 503, not a cut-off 200.
    conversations = await store.list_for(user_hash)
    yield json.dumps(head)[:-1].encode() + b', "conversations": ['
    counts["conversations"] = len(conversations)
    for n, conversation in enumerate(conversations):
        turns = [
            {**asdict(t), "started_at": t.started_at.isoformat(), "completed_at": t.completed_at.isoformat()}
            for t in await store.turns(conversation.conversation_id)
        ]
        shown = {k: v for k, v in asdict(conversation).items() if k != "owner"}
        yield (b", " if n else b"") + json.dumps({**shown, "turns": turns}).encode()
    for key, records in (
        ("feedback", feedback_of(FEEDBACK.storage(config), user_hash)),
        ("transcripts", transcripts_of(TRANSCRIPT.storage(config), user_hash)),
    ):
        yield f'], "{key}": ['.encode()
        counts[key] = 0
        async for chunk in _chunks(records):
            yield (b", " if counts[key] else b"") + b", ".join(record.strip() for record in chunk)
            counts[key] += len(chunk)
    yield b"]}"
