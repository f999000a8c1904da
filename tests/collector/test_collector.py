"""lightspeed-collector against a real ingress on 127.0.0.1: delivery, faults, cleanup, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import tarfile
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from collector.daemon import Collector
from collector.spool import Spool
from lightspeed_common.backoff import parse_retry_after
from lightspeed_common.config import AppConfig
from lightspeed_common.identity import installation_id
from tests.collector.conftest import TOKEN, CollectorConfig
from tests.collector.crashing_collector import FAULT_EXIT
from tests.ingress import Ingress, Reply, start_process, write_record
from tests.support import until


def roots(config: AppConfig) -> tuple[Path, Path]:
    udc = config.user_data_collection
    assert udc.feedback_storage is not None
    assert udc.transcripts_storage is not None
    return udc.feedback_storage, udc.transcripts_storage


def write_records(config: AppConfig, feedback: int = 3, transcripts: int = 4) -> dict[str, bytes]:
    """Records as the server writes them; returns archive member name -> exact bytes."""
    feedback_dir, transcripts_dir = roots(config)
    written = {}
    for i in range(feedback):
        path = write_record(feedback_dir, f"fb-{i:04d}.json", {"user_id": "u", "sentiment": 1, "n": i})
        written[f"feedback/{path.name}"] = path.read_bytes()
    for i in range(transcripts):
        relpath = f"user{i % 2}/conv{i % 3}/tr-{i:04d}.json"
        path = write_record(transcripts_dir, relpath, {"metadata": {"n": i}, "redacted_query": "q"})
        written[f"transcripts/{relpath}"] = path.read_bytes()
    return written


def remaining(config: AppConfig) -> list[Path]:
    return sorted(p for root in roots(config) for p in root.rglob("*") if p.is_file())


def claimed_in_place(config: AppConfig) -> list[str]:
    """The members of the one batch waiting in the spool, each checked to be still in its storage folder."""
    spool = Spool.for_config(config)
    (batch_id,) = spool.pending()
    sources = spool.sources(batch_id)
    assert sorted(Path(path) for path in sources.values()) == remaining(config)
    return list(sources)


async def test_once_delivers_everything_exactly_and_cleans_up(ingress: Ingress, make_config: CollectorConfig) -> None:
    """One pass uploads every record, bytes identical, with the insights headers, then deletes them."""
    config = make_config()
    written = write_records(config)
    assert await Collector(config, once=True).async_run() is True
    assert len(ingress.accepted) == 1
    received = ingress.accepted[0]
    assert received.members == written
    assert received.filename == f"{received.batch_id}.tar.gz"
    assert received.content_type == "application/vnd.redhat.lightspeed.periodic+tar"
    assert received.headers["Authorization"] == f"Bearer {TOKEN}"
    identity = installation_id(config.service.state_dir)
    assert received.headers["User-Agent"] == f"lightspeed-collector/user-data-collection cluster/{identity}"
    assert remaining(config) == []
    feedback_dir, transcripts_dir = roots(config)
    assert feedback_dir.is_dir()
    assert transcripts_dir.is_dir()
    assert list(transcripts_dir.iterdir()) == []  # emptied user/conversation folders are pruned
    assert await Collector(config, once=True).async_run() is True
    assert len(ingress.accepted) == 1  # nothing is sent twice


async def test_cleanup_off_keeps_records_and_never_resends(ingress: Ingress, make_config: CollectorConfig) -> None:
    config = make_config(user_data_collection={"data_collector": {"cleanup_after_send": False}})
    written = write_records(config)
    assert await Collector(config, once=True).async_run() is True
    spool = roots(config)[0].parent / "spool"
    kept = {
        p.relative_to(spool / "sent" / ingress.accepted[0].batch_id).as_posix()
        for p in (spool / "sent").rglob("*.json")
    }
    assert kept == set(written)
    assert await Collector(config, once=True).async_run() is True
    assert len(ingress.accepted) == 1


@pytest.mark.parametrize(
    "failures",
    [
        [Reply(500)],
        [Reply(502), Reply(503)],
        [Reply(429)],
        [Reply(408)],
        [Reply(reset=True)],
    ],
)
async def test_transient_failures_are_retried_until_delivered(
    ingress: Ingress, make_config: CollectorConfig, failures: list[Reply]
) -> None:
    """5xx, 429, 408 and a reset connection are retried with backoff; the same batch id each time."""
    config = make_config()
    written = write_records(config)
    ingress.script = list(failures)
    assert await Collector(config, once=True).async_run() is True
    assert len(ingress.attempts) == len(failures) + 1
    assert len({batch for _, batch in ingress.attempts}) == 1
    assert ingress.accepted[0].members == written


async def test_retry_after_is_honoured(ingress: Ingress, make_config: CollectorConfig) -> None:
    """A 429 with Retry-After: 1 delays the next attempt by at least a second, not the tiny backoff."""
    config = make_config()
    write_records(config)
    ingress.script = [Reply(429, headers={"Retry-After": "1"})]
    assert await Collector(config, once=True).async_run() is True
    (first, _), (second, _) = ingress.attempts
    assert second - first >= 1.0


async def test_a_slow_ingress_times_out_and_nothing_is_lost(ingress: Ingress, make_config: CollectorConfig) -> None:
    """A server slower than connection_timeout_seconds is retried; when retries run out the batch waits."""
    config = make_config(collector={"retry": {"max_attempts": 2}})
    written = write_records(config)
    ingress.default = Reply(delay=3.0)
    assert await Collector(config, once=True).async_run() is False
    assert len(ingress.attempts) == 2
    assert claimed_in_place(config) == sorted(written)  # claimed by a manifest, still where it was written
    ingress.default = Reply()
    assert await Collector(config, once=True).async_run() is True
    assert ingress.accepted[-1].members == written
    assert ingress.accepted[-1].batch_id == ingress.attempts[0][1]  # resumed under the same id


async def test_retries_are_bounded(ingress: Ingress, make_config: CollectorConfig) -> None:
    """An ingress that always fails gets max_attempts tries per flush, no storm."""
    config = make_config()
    write_records(config)
    ingress.default = Reply(503)
    assert await Collector(config, once=True).async_run() is False
    assert len(ingress.attempts) == 4


async def test_401_rereads_the_token_once(ingress: Ingress, make_config: CollectorConfig, tmp_path: Path) -> None:
    """After a token rotation the first 401 makes the collector re-read the token file, then it succeeds."""
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    config = make_config(
        user_data_collection={"data_collector": {"ingress_server_auth_token": None}},
        collector={"ingress_token_file": str(token_file)},
    )
    write_records(config)
    ingress.script = [Reply(401, then=lambda: token_file.write_text("new-token\n"))]
    assert await Collector(config, once=True).async_run() is True
    assert next(a[1] for a in ingress.attempts) == ingress.accepted[0].batch_id
    assert len(ingress.attempts) == 2
    assert ingress.accepted[0].headers["Authorization"] == "Bearer new-token"


def assert_quarantined(config: AppConfig, batch_id: str, status: int, response: str, written: dict[str, bytes]) -> None:
    """The batch, its records and the ingress's answer are in quarantine/<batch_id>/, and nowhere else."""
    quarantine = roots(config)[0].parent / "spool" / "quarantine" / batch_id
    reason = json.loads((quarantine / "reason.json").read_text())
    assert reason["status"] == status
    assert reason["response"] == response
    kept = {p.relative_to(quarantine / "records").as_posix() for p in (quarantine / "records").rglob("*.json")}
    assert kept == set(written)
    with tarfile.open(quarantine / f"{batch_id}.tar.gz") as archive:
        assert set(archive.getnames()) == set(written)
    assert [p for root in roots(config) for p in root.rglob("*.json")] == []


async def test_a_second_401_quarantines_the_batch(ingress: Ingress, make_config: CollectorConfig) -> None:
    """The token is re-read once; a still-rejected token quarantines the batch instead of looping."""
    config = make_config()
    written = write_records(config)
    ingress.default = Reply(401, body="bad token")
    assert await Collector(config, once=True).async_run() is False
    assert len(ingress.attempts) == 2
    assert_quarantined(config, ingress.attempts[0][1], 401, "bad token", written)
    assert await Collector(config, once=True).async_run() is True
    assert len(ingress.attempts) == 2


async def test_retries_are_spread_by_jitter(ingress: Ingress, make_config: CollectorConfig) -> None:
    """With the backoff capped at 50 ms and 300 ms of jitter, the waits between 13 attempts differ by more
    than 100 ms (without jitter they are all 50 ms; by chance this fails less than once in 10,000 runs)."""
    retry = {"initial_seconds": 0.05, "max_seconds": 0.05, "jitter_seconds": 0.3, "max_attempts": 13}
    config = make_config(collector={"retry": retry | {"max_elapsed_seconds": 60}})
    write_records(config, feedback=1, transcripts=0)
    ingress.default = Reply(503)
    assert await Collector(config, once=True).async_run() is False
    times = [at for at, _ in ingress.attempts]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 12
    assert min(gaps) >= 0.05
    assert max(gaps) - min(gaps) > 0.1, gaps


async def test_413_halves_the_batch(ingress: Ingress, make_config: CollectorConfig) -> None:
    config = make_config()
    written = write_records(config, feedback=4, transcripts=4)
    ingress.script = [Reply(413)]
    assert await Collector(config, once=True).async_run() is True
    assert [len(r.members) for r in ingress.accepted] == [4, 4]
    assert set(ingress.all_members()) == set(written)


@pytest.mark.parametrize("status", [400, 403, 415])
async def test_permanent_refusals_quarantine_the_batch(
    ingress: Ingress, make_config: CollectorConfig, status: int
) -> None:
    """400/403/415 move the batch with the response to quarantine/; nothing is deleted or retried."""
    config = make_config()
    written = write_records(config)
    ingress.script = [Reply(status, body="refused: bad content type")]
    assert await Collector(config, once=True).async_run() is False
    assert len(ingress.attempts) == 1
    assert_quarantined(config, ingress.attempts[0][1], status, "refused: bad content type", written)
    assert await Collector(config, once=True).async_run() is True
    assert len(ingress.attempts) == 1


@pytest.mark.parametrize("body", ["", "accepted", "{not json"])
async def test_any_2xx_body_is_acceptance(ingress: Ingress, make_config: CollectorConfig, body: str) -> None:
    config = make_config()
    write_records(config)
    ingress.default = Reply(202, body=body)
    assert await Collector(config, once=True).async_run() is True
    assert remaining(config) == []
    assert await Collector(config, once=True).async_run() is True
    assert len(ingress.attempts) == 1


@pytest.mark.parametrize(
    "text",
    # The second and third nest deeper than Python's parser goes (item 23.5: a RecursionError, retried forever),
    # the third not as deep as orjson goes; the fourth is JSON but not an object, which the ingest refuses.
    ['{"truncated": ', "[" * 5000 + "]" * 5000, "[" * 1000 + "]" * 1000, '["a list", "not an object"]'],
    ids=["truncated", "nested too deeply", "deeper than Python's parser, not orjson's", "not an object"],
)
async def test_invalid_json_is_quarantined_not_uploaded(
    ingress: Ingress, make_config: CollectorConfig, text: str
) -> None:
    config = make_config()
    written = write_records(config, feedback=2, transcripts=0)
    broken = roots(config)[0] / "broken.json"
    broken.write_text(text)
    assert await Collector(config, once=True).async_run() is True
    assert set(ingress.all_members()) == set(written)
    spool = roots(config)[0].parent / "spool"
    quarantined = list((spool / "quarantine").rglob("broken.json"))
    assert len(quarantined) == 1
    assert quarantined[0].read_text() == text


async def test_a_record_too_large_for_any_batch_is_quarantined(ingress: Ingress, make_config: CollectorConfig) -> None:
    config = make_config(collector={"max_batch_bytes": 8192})
    written = write_records(config, feedback=2, transcripts=0)
    big = write_record(roots(config)[0], "big.json", {"blob": "x" * 20000})
    assert await Collector(config, once=True).async_run() is False
    assert set(ingress.all_members()) == set(written)
    spool = roots(config)[0].parent / "spool"
    kept = list((spool / "quarantine").rglob("big.json"))
    assert len(kept) == 1
    assert kept[0].stat().st_size == len(json.dumps({"blob": "x" * 20000}))
    assert not big.exists()


async def test_batches_respect_the_file_cap(ingress: Ingress, make_config: CollectorConfig) -> None:
    config = make_config(collector={"max_batch_files": 3})
    written = write_records(config, feedback=5, transcripts=4)
    assert await Collector(config, once=True).async_run() is True
    assert [len(r.members) for r in ingress.accepted] == [3, 3, 3]
    assert sorted(ingress.all_members()) == sorted(written)


async def test_temporaries_dotfiles_and_symlinks_are_never_collected(
    ingress: Ingress, make_config: CollectorConfig, tmp_path: Path
) -> None:
    config = make_config()
    feedback_dir, _ = roots(config)
    written = write_records(config, feedback=1, transcripts=0)
    (feedback_dir / ".half.json.tmp").write_text('{"partial"')
    (feedback_dir / ".hidden.json").write_text("{}")
    outside = tmp_path / "outside.json"
    outside.write_text('{"secret": true}')
    (feedback_dir / "link.json").symlink_to(outside)
    (feedback_dir / "notes.txt").write_text("x")
    assert await Collector(config, once=True).async_run() is True
    assert set(ingress.all_members()) == set(written)
    assert outside.read_text() == '{"secret": true}'
    assert sorted(p.name for p in feedback_dir.iterdir()) == [
        ".half.json.tmp",
        ".hidden.json",
        "link.json",
        "notes.txt",
    ]


async def run_collector_process(config: AppConfig, tmp_path: Path, fault: str | None) -> int:
    proc = await start_process(config, tmp_path, "--once", fault=fault)
    await proc.communicate()
    assert proc.returncode is not None
    return int(proc.returncode)


@pytest.mark.parametrize(
    ("fault", "uploads_after_restart"),
    [
        ("after_claim", 1),  # nothing was sent: the claimed batch goes after restart
        ("after_package", 1),
        ("after_upload", 2),  # accepted but not journaled: the same batch once more (the only duplicate case)
        ("after_journal", 1),  # journaled: never sent again, only cleaned up
        ("after_cleanup", 1),
    ],
)
async def test_a_crash_at_any_step_loses_nothing_and_resends_only_unjournaled(
    ingress: Ingress, make_config: CollectorConfig, tmp_path: Path, fault: str, uploads_after_restart: int
) -> None:
    """Hard exit at each step boundary, then a restart: every record arrives, none is left, no extra re-send."""
    config = make_config()
    written = write_records(config)
    assert await run_collector_process(config, tmp_path, fault) == FAULT_EXIT
    assert await run_collector_process(config, tmp_path, None) == 0
    assert len(ingress.accepted) == uploads_after_restart
    assert len({r.batch_id for r in ingress.accepted}) == 1
    assert all(r.members == written for r in ingress.accepted)
    assert remaining(config) == []
    spool = roots(config)[0].parent / "spool"
    assert [p for p in (spool / "claimed").iterdir()] == []
    assert [p for p in (spool / "outbox").iterdir()] == []


async def test_the_daemon_ships_new_records_and_stops_cleanly(ingress: Ingress, make_config: CollectorConfig) -> None:
    """Running as a daemon, a record written later reaches the ingress within one interval; stop ends the run."""
    config = make_config(user_data_collection={"data_collector": {"collection_interval": 1}})
    collector = Collector(config)
    task = asyncio.create_task(collector.async_run())
    await asyncio.wait_for(collector.ready.wait(), 10)
    written = write_records(config, feedback=1, transcripts=1)
    async with asyncio.timeout(10):
        await ingress.wait_for_members(set(written))
    assert set(ingress.all_members()) == set(written)
    collector.stop()
    assert await asyncio.wait_for(task, 10) is True
    assert remaining(config) == []


@pytest.mark.parametrize("folders", ["exist_at_start", "created_after_start", "only_feedback_at_start"])
async def test_enough_pending_bytes_flush_before_the_interval(
    ingress: Ingress, make_config: CollectorConfig, folders: str
) -> None:
    """With an hour-long interval, records reaching the batch size are shipped at once (watchfiles), also
    when the storage folders appear only after the collector started (the server creates them), or one
    of them does (item 23.19: the missing one is watched too once it appears); transcripts arrive in
    nested user/conversation folders (item 23.19: the watch is recursive)."""
    config = make_config(collector={"max_batch_bytes": 16384, "flush_on_stop": False})
    feedback_dir, transcripts_dir = roots(config)
    if folders != "created_after_start":
        feedback_dir.mkdir(parents=True)
    if folders == "exist_at_start":
        transcripts_dir.mkdir(parents=True)
    assert transcripts_dir.exists() == (folders == "exist_at_start")
    collector = Collector(config)
    task = asyncio.create_task(collector.async_run())
    await asyncio.wait_for(collector.ready.wait(), 10)

    async def first_pass_done() -> bool:
        return collector.spool.status_path.exists()

    # The pass at start is over: only the watch can ship what is written now.
    await until(first_pass_done, "the collector's first pass")
    written = {}
    for i in range(12):
        relpath = f"user{i % 2}/conversation{i % 3}/burst-{i}.json"
        path = write_record(transcripts_dir, relpath, {"pad": "x" * 1500, "i": i})
        written[f"transcripts/{relpath}"] = path.read_bytes()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            await ingress.wait_for_members(set(written))
    shipped_while_running = set(ingress.all_members())
    collector.stop()
    await asyncio.wait_for(task, 10)
    assert shipped_while_running == set(written)


async def test_the_token_never_reaches_logs_or_the_journal(ingress: Ingress, make_config: CollectorConfig) -> None:
    config = make_config()
    write_records(config)
    ingress.script = [Reply(503), Reply(401), Reply(401)]  # retries, a re-read, a quarantine: every log path
    with capture_logs() as logs:
        await Collector(config, once=True).async_run()
    spool = roots(config)[0].parent / "spool"
    texts = [
        json.dumps(logs),
        *(p.read_text(errors="replace") for p in spool.rglob("*") if p.is_file() and p.suffix != ".gz"),
    ]
    assert logs  # something was logged
    assert not [t for t in texts if TOKEN in t]


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Sun, 22 Nov 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Sun, 22 Nov 2026 11:00:00 GMT", now) == 0.0  # in the past: no wait
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


async def test_each_batch_logs_one_structured_line(ingress: Ingress, make_config: CollectorConfig) -> None:
    config = make_config()
    written = write_records(config)
    with capture_logs() as logs:
        assert await Collector(config, once=True).async_run() is True
    [line] = [e for e in logs if e["event"] == "batch_uploaded"]
    assert line["batch_id"] == ingress.accepted[0].batch_id
    assert line["files"] == len(written)
    assert line["bytes"] > 0
    assert line["request_id"] == "ingress-assigned"
    assert 0 < line["duration_ms"] < 60_000


async def test_once_says_what_it_does_and_ends_with_the_summary(ingress: Ingress, make_config: CollectorConfig) -> None:
    """Item 23.24: `--once` logs each batch's cleanup (what was deleted, how long it took) and ends with the
    `collector_stopped` summary docs/collector.md promises."""
    config = make_config(collector={"max_batch_files": 4})
    written = write_records(config, feedback=5, transcripts=5)
    with capture_logs() as logs:
        assert await Collector(config, once=True).async_run() is True
    uploaded = [e for e in logs if e["event"] == "batch_uploaded"]
    cleaned = [e for e in logs if e["event"] == "batch_cleaned_up"]
    assert {e["batch_id"] for e in cleaned} == {e["batch_id"] for e in uploaded}
    assert sum(e["files"] for e in cleaned) == len(written)
    assert {e["action"] for e in cleaned} == {"deleted"}
    assert logs[-1]["event"] == "collector_stopped"
    assert (logs[-1]["batches"], logs[-1]["records"]) == (len(uploaded), len(written))


async def test_records_written_during_a_pass_are_never_lost(ingress: Ingress, make_config: CollectorConfig) -> None:
    """A writer keeps adding records while passes scan, claim, upload and clean up; all arrive once."""
    config = make_config(collector={"max_batch_files": 25})
    feedback_dir, transcripts_dir = roots(config)
    expected: set[bytes] = set()
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            root, relpath = (feedback_dir, f"w{n}.json") if n % 2 else (transcripts_dir, f"u{n % 3}/c{n % 7}/w{n}.json")
            write_record(root, relpath, {"n": n})  # the collector may claim it at once
            expected.add(json.dumps({"n": n}).encode())
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(5):
            await Collector(config, once=True).async_run()
    finally:
        stop.set()
        thread.join()
    assert await Collector(config, once=True).async_run() is True
    received = [data for r in ingress.accepted for data in r.members.values()]
    assert len(received) == len(set(received))  # nothing arrived twice
    assert set(received) == expected
    assert remaining(config) == []
