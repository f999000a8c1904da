"""Recovery: batches claimed before a crash, accepted batches whose cleanup failed or cannot finish; none is
ever sent twice once the journal says it was accepted, and none is lost."""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from collector.daemon import Collector
from tests.collector.conftest import CollectorConfig
from tests.collector.crashing_collector import FAULT_EXIT
from tests.collector.test_collector import remaining, roots, run_collector_process, write_records
from tests.ingress import Ingress, write_record
from tests.support import until


async def test_records_claimed_before_a_crash_are_sent_once_while_their_cleanup_is_still_running(
    ingress: Ingress, make_config: CollectorConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch claimed before a crash lists records still in the storage folders. After the restart it is
    sent, and its cleanup runs in the background while the walk for new records goes on: the walk must
    pass over them (held here until the walk is over), or they would go again in a second batch."""
    config = make_config()
    written = write_records(config)
    assert await run_collector_process(config, tmp_path, "after_claim") == FAULT_EXIT
    collector = Collector(config, once=True)
    walk_over = threading.Event()
    finish, ship_erasures = collector.spool.finish, collector.delivery._ship_erasures

    def finish_after_the_walk(batch_id: str, keep: bool, members: Iterable[str] = ()) -> None:
        assert walk_over.wait(30)
        finish(batch_id, keep, members)

    async def erasures_after_the_walk(uploader: Any) -> bool:
        walk_over.set()
        return await ship_erasures(uploader)

    monkeypatch.setattr(collector.spool, "finish", finish_after_the_walk)
    monkeypatch.setattr(collector.delivery, "_ship_erasures", erasures_after_the_walk)
    assert await collector.async_run() is True
    assert walk_over.is_set()
    assert len(ingress.accepted) == 1
    assert ingress.accepted[0].members == written
    assert remaining(config) == []


async def test_a_recovery_that_fails_stops_the_flush_before_anything_is_sent_again(
    ingress: Ingress, make_config: CollectorConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Accepted and journaled, then a crash before the cleanup: while the cleanup cannot be finished (a disk
    error), the flush fails and sends nothing, and never the accepted batch again; once it can, it ends."""
    config = make_config()
    written = write_records(config)
    assert await run_collector_process(config, tmp_path, "after_journal") == FAULT_EXIT
    assert len(ingress.accepted) == 1
    failing = Collector(config, once=True)

    def disk_error(batch_id: str, keep: bool, members: Iterable[str] = ()) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(failing.spool, "finish", disk_error)
    assert await failing.async_run() is False
    assert failing.totals.last_error == "recover: Input/output error"
    assert len(ingress.attempts) == 1
    assert await Collector(config, once=True).async_run() is True
    assert len(ingress.accepted) == 1
    assert ingress.accepted[0].members == written
    assert remaining(config) == []


async def test_a_cleanup_that_failed_is_finished_by_the_next_flush_and_never_sent_again(
    ingress: Ingress, make_config: CollectorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon whose cleanup of an accepted batch failed (a disk error) finishes it at its next flush,
    from the journal: the batch is not uploaded a second time, and its records are deleted."""
    config = make_config(user_data_collection={"data_collector": {"collection_interval": 1}})
    collector = Collector(config)
    finish = collector.spool.finish
    failed: list[str] = []

    def fail_once(batch_id: str, keep: bool, members: Iterable[str] = ()) -> None:
        if not failed:
            failed.append(batch_id)
            raise OSError(errno.EIO, "Input/output error")
        finish(batch_id, keep, members)

    monkeypatch.setattr(collector.spool, "finish", fail_once)
    first = write_records(config, feedback=2, transcripts=2)
    task = asyncio.create_task(collector.async_run())
    async with asyncio.timeout(10):
        await ingress.wait_for_members(set(first))

    async def cleanup_failed() -> bool:
        return bool(failed)

    await until(cleanup_failed, "the first cleanup failed")
    later = {"feedback/later.json": write_record(roots(config)[0], "later.json", {"n": "later"}).read_bytes()}
    async with asyncio.timeout(10):
        await ingress.wait_for_members(set(later))  # a later flush ran
    collector.stop()
    assert await asyncio.wait_for(task, 10) is True
    assert [received.batch_id for received in ingress.accepted].count(failed[0]) == 1
    assert sorted(ingress.all_members()) == sorted({**first, **later})
    assert remaining(config) == []
    assert collector.spool.pending() == []


async def test_an_idle_flush_leaves_the_empty_journal_alone(ingress: Ingress, make_config: CollectorConfig) -> None:
    """Every flush recovers and compacts; with nothing to drop there is no write (and no fsync) at all."""
    config = make_config()
    write_records(config)
    assert await Collector(config, once=True).async_run() is True
    journal = roots(config)[0].parent / "spool" / "journal"
    assert journal.stat().st_size > 0  # the batch's `sent` and `done`
    assert await Collector(config, once=True).async_run() is True  # compacted: nothing unfinished is kept
    emptied = journal.stat()
    assert emptied.st_size == 0
    assert await Collector(config, once=True).async_run() is True
    assert (journal.stat().st_ino, journal.stat().st_mtime_ns) == (emptied.st_ino, emptied.st_mtime_ns)


async def test_a_batch_claimed_by_renaming_before_manifests_is_delivered_as_it_is(
    ingress: Ingress, make_config: CollectorConfig
) -> None:
    """An older collector claimed by moving the files into the batch's folder: after an upgrade, such a batch
    goes under its own id, with its records, and nothing is left behind."""
    config = make_config()
    new = write_records(config, feedback=1, transcripts=1)
    spool = roots(config)[0].parent / "spool"
    old = {"feedback/old.json": b'{"n": "old"}', "transcripts/u/c/old.json": b'{"metadata": {"n": "old"}}'}
    for member, data in old.items():
        path = spool / "claimed" / "0ld" / member
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
    assert await Collector(config, once=True).async_run() is True
    received = {r.batch_id: r.members for r in ingress.accepted}
    assert received["0ld"] == old
    assert sorted(m for batch, members in received.items() if batch != "0ld" for m in members) == sorted(new)
    assert remaining(config) == []
    assert list((spool / "claimed").iterdir()) == []
