"""An erased user's records are never shipped: the collector reads the server's erasure notes before it
packages a batch, new or claimed before the erasure, and deletes that user's records from it."""

from __future__ import annotations

import uuid
from pathlib import Path

from collector.daemon import Collector
from lightspeed_common.atomic import write_atomic
from lightspeed_common.config import AppConfig
from lightspeed_common.records import erasure_notes_dir, spool_dir
from tests.collector.conftest import CollectorConfig
from tests.collector.test_collector import roots
from tests.ingress import Ingress, Reply, write_record

ERASED, KEPT = "a" * 64, "b" * 64


def records_of(config: AppConfig, user_hash: str, count: int) -> set[str]:
    """`count` transcripts and one feedback of `user_hash`, as the server writes them; their members."""
    feedback_dir, transcripts_dir = roots(config)
    conversation = str(uuid.uuid4())
    members = set()
    for _ in range(count):
        relpath = f"{user_hash}/{conversation}/{uuid.uuid4()}.json"
        write_record(transcripts_dir, relpath, {"metadata": {"user_id": user_hash, "conversation_id": conversation}})
        members.add(f"transcripts/{relpath}")
    name = f"{uuid.uuid4()}.json"
    write_record(feedback_dir, name, {"user_id": user_hash, "conversation_id": conversation, "sentiment": 1})
    return members | {f"feedback/{name}"}


def erase(config: AppConfig, user_hash: str) -> None:
    """The server's note for `user_hash` (lightspeed.privacy.erasure writes it so)."""
    note = b'{"server_done": true, "user_hash": "' + user_hash.encode() + b'"}'
    write_atomic(erasure_notes_dir(config) / f"{user_hash}.json", note)


def files_holding(config: AppConfig, user_hash: str) -> list[Path]:
    """Files of the storage folders and the spool (the notes aside) that hold `user_hash`."""
    folders = [*roots(config), spool_dir(config)]
    found = [p for folder in folders for p in folder.rglob("*.json") if user_hash in f"{p}{p.read_text()}"]
    return [p for p in found if p.parent != erasure_notes_dir(config)]


async def test_an_erased_users_records_are_deleted_not_shipped(ingress: Ingress, make_config: CollectorConfig) -> None:
    config = make_config()
    records_of(config, ERASED, 3)
    kept = records_of(config, KEPT, 2)
    erase(config, ERASED)
    assert await Collector(config, once=True).async_run() is True
    assert set(ingress.accepted[0].members) == kept
    assert files_holding(config, ERASED) == []
    assert (erasure_notes_dir(config) / f"{ERASED}.json").exists()  # until the erasure record ships


async def test_a_batch_claimed_before_the_erasure_is_packaged_again_without_them(
    ingress: Ingress, make_config: CollectorConfig
) -> None:
    config = make_config()
    records_of(config, ERASED, 2)
    kept = records_of(config, KEPT, 1)
    ingress.default = Reply(503)
    assert await Collector(config, once=True).async_run() is False  # claimed and packaged, not accepted
    assert ingress.accepted == []
    erase(config, ERASED)
    ingress.default = Reply()
    assert await Collector(config, once=True).async_run() is True
    assert [set(a.members) for a in ingress.accepted] == [kept]
    assert files_holding(config, ERASED) == []
