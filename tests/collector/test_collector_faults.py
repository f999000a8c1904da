"""The collector under faults with real processes: SIGTERM, kills, a full disk, racing writers, bursts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from collector.__main__ import main as collector_main
from collector.daemon import Collector
from tests.collector.conftest import CollectorConfig
from tests.collector.crashing_collector import FAULT_EXIT
from tests.collector.test_collector import claimed_in_place, remaining, roots, write_records
from tests.ingress import Ingress, Reply, config_file, start_process, write_record
from tests.support import fill_up


def storage_on(disk: Path) -> dict[str, str]:
    """Both storage directories (and so the spool beside them) on `disk`."""
    return {"feedback_storage": str(disk / "feedback"), "transcripts_storage": str(disk / "transcripts")}


def records_on(disk: Path) -> list[Path]:
    """Record files anywhere on the disk (storage or spool), not the collector's own status file."""
    return [p for p in disk.rglob("*.json") if p.name != "status.json"]


async def test_status_reports_pending_and_last_success(
    ingress: Ingress, make_config: CollectorConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status` shows pending records and bytes, oldest age, outbox, quarantine, last success and error."""
    config = make_config()
    written = write_records(config, feedback=2, transcripts=1)
    oldest = next(p for root in roots(config) for p in root.rglob("*.json"))
    os.utime(oldest, (time.time() - 120, time.time() - 120))
    path = config_file(config, tmp_path)
    assert collector_main(["status", "--config", str(path)]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["pending_records"] == 3
    assert before["pending_bytes"] == sum(len(b) for b in written.values())
    assert 119 <= before["oldest_pending_age_seconds"] <= 180
    assert before["last_success"] is None
    assert await Collector(config, once=True).async_run() is True
    capsys.readouterr()  # the run's own log lines
    assert collector_main(["status", "--config", str(path)]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["pending_records"] == 0
    assert after["outbox_batches"] == 0
    assert after["quarantined"] == 0
    assert abs((datetime.now(UTC) - datetime.fromisoformat(after["last_success"])).total_seconds()) < 60
    assert after["last_error"] is None


async def test_status_shows_a_batch_waiting_in_claimed_and_outbox(
    ingress: Ingress, make_config: CollectorConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch the ingress keeps refusing (503) waits in claimed/ and outbox/: status counts its records
    as pending, by stage, with the oldest age, instead of `pending_records: 0`."""
    config = make_config()
    written = write_records(config, feedback=2, transcripts=2)
    for path in (p for root in roots(config) for p in root.rglob("*.json")):
        os.utime(path, (time.time() - 300, time.time() - 300))
    ingress.default = Reply(503)
    assert await Collector(config, once=True).async_run() is False
    capsys.readouterr()
    assert collector_main(["status", "--config", str(config_file(config, tmp_path))]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["pending_records"] == len(written)
    assert shown["stages"]["new"]["records"] == 0
    assert shown["stages"]["claimed"]["batches"] == 1
    assert shown["stages"]["claimed"]["records"] == len(written)
    assert shown["stages"]["claimed"]["bytes"] == sum(len(b) for b in written.values())
    assert shown["stages"]["outbox"]["batches"] == 1
    assert 299 <= shown["oldest_pending_age_seconds"] <= 360
    assert "503" in shown["last_error"]


async def test_sigterm_during_an_upload_finishes_it_and_exits_0(
    ingress: Ingress, make_config: CollectorConfig, tmp_path: Path
) -> None:
    """SIGTERM while the ingress is still answering: the upload completes within the grace, exit 0."""
    config = make_config()
    written = write_records(config)
    ingress.default = Reply(delay=1.0)
    proc = await start_process(config, tmp_path)
    for _ in range(500):
        if ingress.attempts:
            break
        await asyncio.sleep(0.01)
    assert ingress.attempts, "the upload started"
    proc.send_signal(signal.SIGTERM)
    output, _ = await proc.communicate()
    assert proc.returncode == 0, output.decode()
    assert ingress.accepted[0].members == written
    assert remaining(config) == []
    assert b"collector_stopped" in output


async def test_sigterm_during_a_hung_upload_resumes_it_after_restart(
    ingress: Ingress, make_config: CollectorConfig, tmp_path: Path
) -> None:
    """An upload longer than the stop grace is abandoned (exit 0) and resumed under the same id next start."""
    config = make_config(
        collector={"shutdown_grace_seconds": 0.3},
        user_data_collection={"data_collector": {"connection_timeout_seconds": 30}},
    )
    written = write_records(config)
    ingress.script = [Reply(delay=5.0)]
    proc = await start_process(config, tmp_path)
    for _ in range(500):
        if ingress.attempts:
            break
        await asyncio.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0
    assert claimed_in_place(config) == sorted(written)  # claimed by a manifest, still where it was written
    restarted = await start_process(config, tmp_path, "--once")
    await restarted.communicate()
    assert restarted.returncode == 0
    assert [r.batch_id for r in ingress.accepted][-1] == ingress.attempts[0][1]
    assert ingress.accepted[-1].members == written


async def test_a_full_disk_loses_nothing_and_recovers(
    ingress: Ingress, make_config: CollectorConfig, small_tmpfs: Any
) -> None:
    """With the data and spool disk full, no source file is lost; once space returns everything is shipped."""
    disk = small_tmpfs("disk", "size=1m")
    config = make_config(user_data_collection=storage_on(disk))
    written = write_records(config, feedback=20, transcripts=20)
    fill_up(disk)
    with capture_logs() as logs:
        assert await Collector(config, once=True).async_run() is False
    full = [e for e in logs if e["event"] == "disk_full"]
    assert full, logs
    assert full[0]["reason"] == "No space left on device"
    on_disk = {p.name: p.read_bytes() for p in records_on(disk)}
    assert sorted(on_disk.values()) == sorted(written.values())  # every record still whole, somewhere
    (disk / "filler").unlink()
    assert await Collector(config, once=True).async_run() is True
    assert sorted(ingress.all_members()) == sorted(written)
    assert records_on(disk) == []


async def test_a_record_written_during_an_upload_is_not_deleted_unsent(
    ingress: Ingress, make_config: CollectorConfig
) -> None:
    """A record that appears while a batch is in flight stays until a later batch delivers it."""
    config = make_config()
    written = write_records(config, feedback=2, transcripts=2)
    _feedback_dir, transcripts_dir = roots(config)
    late: dict[str, bytes] = {}

    def write_late() -> None:
        path = write_record(transcripts_dir, "user0/conv0/late.json", {"late": True})
        late["transcripts/user0/conv0/late.json"] = path.read_bytes()

    ingress.script = [Reply(202, then=write_late)]
    assert await Collector(config, once=True).async_run() is True
    assert set(ingress.all_members()) == set(written)
    assert (transcripts_dir / "user0/conv0/late.json").exists()  # the prune left its folder alone
    assert await Collector(config, once=True).async_run() is True
    assert ingress.accepted[-1].members == late
    assert remaining(config) == []


async def test_a_burst_of_10000_records_is_delivered_completely(
    ingress: Ingress, make_config: CollectorConfig, small_tmpfs: Any
) -> None:
    disk = small_tmpfs("burst", "size=400m")
    config = make_config(
        user_data_collection=storage_on(disk),
        collector={"max_batch_files": 4000},
    )
    feedback_dir, transcripts_dir = roots(config)
    feedback_dir.mkdir(parents=True)
    expected = {}
    for i in range(10_000):
        if i % 2:
            relpath = f"user{i % 40}/conv{i % 400}/{i:05d}.json"
            path = transcripts_dir / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            member = f"transcripts/{relpath}"
        else:
            path = feedback_dir / f"{i:05d}.json"
            member = f"feedback/{path.name}"
        data = json.dumps({"n": i, "pad": "x" * 300}).encode()
        path.write_bytes(data)
        expected[member] = data
    assert await Collector(config, once=True).async_run() is True
    received = {name: data for r in ingress.accepted for name, data in r.members.items()}
    assert received == expected
    assert [len(r.members) for r in ingress.accepted] == [4000, 4000, 2000]
    assert records_on(disk) == []


async def kill_within(proc: Any, after: str, delay: float) -> bytes:
    """SIGKILL `proc` `delay` seconds after it passes `after` (`started`: its imports are done and its work
    begins; else a step boundary), if it gets there; what it printed until then."""
    assert proc.stdout is not None
    wanted = b"started\n" if after == "started" else f"checkpoint {after}\n".encode()
    seen = b""
    while line := await asyncio.wait_for(proc.stdout.readline(), timeout=60):
        seen += line
        if line == wanted:
            await asyncio.sleep(delay)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            break
    return seen


@pytest.mark.timeout(400)
async def test_randomized_writes_kills_and_restarts_lose_nothing(
    ingress: Ingress, make_config: CollectorConfig, tmp_path: Path
) -> None:
    """60 cycles of new records and a collector that crashes at a step boundary, is killed at a random
    moment within a step (just after its start or a boundary: a kill during its imports tests nothing), or
    runs to the end.

    Every record arrives, by content; nothing is left behind; a record arrives
    under one batch id only, and a batch arrives again only if a kill hit it in flight.
    """
    rng = random.Random(20261122)
    config = make_config(collector={"max_batch_files": 7})
    feedback_dir, _ = roots(config)
    steps = ["after_claim", "after_package", "after_upload", "after_journal", "after_cleanup"]
    expected: dict[bytes, str] = {}
    crashed_at: set[str] = set()
    killed_within: set[str] = set()  # the step after `started` or a boundary that a kill cut short
    ended_early = 0
    for cycle in range(60):
        for n in range(rng.randint(0, 6)):
            path = write_record(feedback_dir, f"c{cycle:03d}-{n}.json", {"cycle": cycle, "n": n})
            expected[path.read_bytes()] = path.name
        roll = rng.random()
        fault = rng.choice(steps) if roll < 0.35 else "never"
        proc = await start_process(config, tmp_path, "--once", fault=fault)
        seen = b""
        after = rng.choice(["started", *steps[:-1]])
        if 0.35 <= roll < 0.7:
            seen = await kill_within(proc, after, rng.uniform(0.0, 0.02))
        rest, _ = await proc.communicate()
        if proc.returncode == FAULT_EXIT:
            crashed_at.add(fault)
            ended_early += 1
        elif proc.returncode == -signal.SIGKILL:
            killed_within.add(after)
            ended_early += 1
        else:
            assert proc.returncode == 0, (seen + rest).decode()
    final = await start_process(config, tmp_path, "--once")
    output, _ = await final.communicate()
    assert final.returncode == 0, output.decode()
    batches_of: dict[bytes, set[str]] = defaultdict(set)
    receipts: dict[str, int] = defaultdict(int)
    for received in ingress.accepted:
        receipts[received.batch_id] += 1
        for data in received.members.values():
            batches_of[data].add(received.batch_id)
    assert set(batches_of) == set(expected), "every record arrived"
    assert all(len(ids) == 1 for ids in batches_of.values()), "no record arrived under two batch ids"
    resent = sum(count - 1 for count in receipts.values())
    assert 0 < resent <= ended_early  # a crash after an upload sends its batch again, under the same id
    assert remaining(config) == []
    spool = feedback_dir.parent / "spool"
    assert list((spool / "claimed").iterdir()) == []
    assert list((spool / "outbox").iterdir()) == []
    # What was tried: a crash at every step boundary, and a kill within every step.
    assert crashed_at == set(steps)
    assert killed_within == {"started", *steps[:-1]}
