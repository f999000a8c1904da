"""An erased user's records are never shipped: the collector reads the server's erasure notes before it
packages a batch, new or claimed before the erasure, and deletes that user's records from it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from collector.commands import status
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


def erase(config: AppConfig, user_hash: str, erased_at: str | None = "2026-12-01T10:00:00+00:00") -> None:
    """The server's note for `user_hash` (lightspeed.privacy.erasure writes it so); `erased_at` None: the
    server's part is still running."""
    note = {"server_done": erased_at is not None, "user_hash": user_hash, "erased_at": erased_at}
    write_atomic(note_path(config, user_hash), json.dumps(note).encode())


def note_path(config: AppConfig, user_hash: str) -> Path:
    return erasure_notes_dir(config) / f"{user_hash}.json"


def erasure_batches(ingress: Ingress) -> list[dict[str, object]]:
    """The erasure records the ingress accepted, in order; each came alone in its batch."""
    found = []
    for received in ingress.accepted:
        if any(name.startswith("erasures/") for name in received.members):
            assert len(received.members) == 1, received.members
            found.append(json.loads(next(iter(received.members.values()))))
    return found


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
    # The erasure record comes last, alone, with the hash and the time and nothing else; then the note goes.
    assert erasure_batches(ingress) == [
        {"kind": "erasure", "user_id": ERASED, "erased_at": "2026-12-01T10:00:00+00:00"}
    ]
    assert list(ingress.accepted[-1].members) == [f"erasures/{ERASED}.json"]
    assert not note_path(config, ERASED).exists()
    assert await Collector(config, once=True).async_run() is True
    assert len(ingress.accepted) == 2  # nothing shipped twice


async def test_a_record_written_after_the_erasure_is_the_users_new_data_and_ships(
    ingress: Ingress, make_config: CollectorConfig
) -> None:
    config = make_config()
    feedback_dir, _ = roots(config)
    before = write_record(feedback_dir, "before.json", {"user_id": ERASED, "timestamp": "2026-12-01 09:59:59+00:00"})
    write_record(feedback_dir, "after.json", {"user_id": ERASED, "timestamp": "2026-12-01 10:00:01+00:00"})
    erase(config, ERASED)
    assert await Collector(config, once=True).async_run() is True
    assert ingress.accepted[0].members.keys() == {"feedback/after.json"}
    assert not before.exists()


async def test_while_the_servers_part_runs_every_record_of_the_user_is_held_back_and_nothing_ships(
    ingress: Ingress, make_config: CollectorConfig
) -> None:
    config = make_config()
    feedback_dir, _ = roots(config)
    write_record(feedback_dir, "late.json", {"user_id": ERASED, "timestamp": "2030-01-01 00:00:00+00:00"})
    kept = records_of(config, KEPT, 1)
    erase(config, ERASED, erased_at=None)
    assert await Collector(config, once=True).async_run() is True
    assert [set(a.members) for a in ingress.accepted] == [kept]
    assert note_path(config, ERASED).exists()  # the server finishes it, then the record ships


async def test_an_erasure_record_the_ingress_did_not_take_is_sent_again_and_a_newer_note_is_not_lost(
    ingress: Ingress, make_config: CollectorConfig
) -> None:
    config = make_config()
    erase(config, ERASED)
    ingress.default = Reply(503)
    assert await Collector(config, once=True).async_run() is False
    assert note_path(config, ERASED).exists()
    assert status(config)["erasures_waiting"] == 1  # what an operator sees while the ingress is away
    erase(config, ERASED, erased_at="2026-12-02T10:00:00+00:00")  # the user came back and was erased again
    ingress.default = Reply()
    assert await Collector(config, once=True).async_run() is True
    times = [record["erased_at"] for record in erasure_batches(ingress)]
    assert times == ["2026-12-01T10:00:00+00:00", "2026-12-02T10:00:00+00:00"]
    assert not note_path(config, ERASED).exists()
    assert status(config)["erasures_waiting"] == 0


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
    assert [set(a.members) for a in ingress.accepted] == [kept, {f"erasures/{ERASED}.json"}]
    assert files_holding(config, ERASED) == []


async def test_records_kept_under_sent_or_quarantined_go_too(ingress: Ingress, make_config: CollectorConfig) -> None:
    config = make_config(user_data_collection={"data_collector": {"cleanup_after_send": False}})
    records_of(config, ERASED, 1)
    assert await Collector(config, once=True).async_run() is True  # kept under sent/
    records_of(config, ERASED, 1)
    refused_of_kept = records_of(config, KEPT, 1)
    ingress.script = [Reply(400, '{"detail": "no"}')]
    assert await Collector(config, once=True).async_run() is False  # quarantined, archive and all
    quarantine = spool_dir(config) / "quarantine"
    assert list(quarantine.rglob("*.tar.gz"))
    erase(config, ERASED)
    assert await Collector(config, once=True).async_run() is True
    assert files_holding(config, ERASED) == []
    assert not list(quarantine.rglob("*.tar.gz"))  # its copy held the erased user's records
    names = {p.name for p in quarantine.rglob("*.json")}
    assert {member.rsplit("/", 1)[1] for member in refused_of_kept} <= names  # the other user's stay for the operator
