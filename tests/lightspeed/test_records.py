"""Records on disk: the atomic write, the keyed user hash, redaction."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest

from lightspeed.identity import UserHasher
from lightspeed.records.formats import Feedback, Transcript
from lightspeed.records.writer import RecordWriter, prepare_storage
from lightspeed_common.atomic import make_dirs, write_atomic
from lightspeed_common.errors import RecordWriteError, StorageError
from lightspeed_common.records import FEEDBACK, TRANSCRIPT
from tests.support import fill_up, json_files, until


def feedback(i: int, size: int = 10) -> Feedback:
    return Feedback(f"c{i}", "q", "r" * size, 1, None, None, user_hash=f"h{i}")


def transcript(user_hash: str, conversation_id: str) -> Transcript:
    return Transcript(user_hash, conversation_id, "local", "m", None, None, "q", "a", [], False, [])


async def test_no_json_is_ever_observable_half_written(tmp_path: Path) -> None:
    """While 8 threads write 600 large records, every *.json a reader sees parses whole."""
    storage = tmp_path / "feedback"
    writer = RecordWriter(storage, None, committers=8)
    storage.mkdir()
    seen: set[str] = set()
    broken: list[str] = []
    done = threading.Event()

    def read_continuously() -> None:
        while not done.is_set():
            for path in json_files(storage):
                if path.name in seen:
                    continue
                try:
                    json.loads(path.read_bytes())
                except ValueError:
                    broken.append(path.name)
                seen.add(path.name)

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        paths = await asyncio.gather(*(writer.write_feedback(feedback(i, 200_000)) for i in range(600)))
    finally:
        done.set()
        reader.join()
        await writer.close()
    assert broken == []
    assert len(seen) > 0
    assert len(json_files(storage)) == len(set(paths)) == 600
    assert [p for p in storage.iterdir() if p.name.startswith(".")] == []


def test_a_failed_write_leaves_neither_target_nor_temp(small_tmpfs: object, tmp_path: Path) -> None:
    """ENOSPC mid-write removes the temp file and never creates the target."""
    disk = small_tmpfs("disk", "size=128k")  # type: ignore[operator]
    fill_up(disk)
    target = disk / "record.json"
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"x" * 100_000)
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


async def test_writer_reports_failure_without_storage(tmp_path: Path) -> None:
    writer = RecordWriter(None, None, committers=1)
    with pytest.raises(RecordWriteError, match="no feedback_storage"):
        await writer.write_feedback(feedback(1))
    await writer.close()


async def test_a_dead_writer_process_fails_its_writes_and_is_restarted(tmp_path: Path) -> None:
    """Killing the writer process fails the writes in flight cleanly; the next write starts a new one."""
    storage = tmp_path / "feedback"
    writer = RecordWriter(storage, None, committers=4)
    first = await writer.write_feedback(feedback(0))
    proc = writer._process._proc
    assert proc is not None
    in_flight = [asyncio.ensure_future(writer.write_feedback(feedback(i, 2_000_000))) for i in range(1, 30)]
    await asyncio.sleep(0)
    proc.kill()
    results = await asyncio.gather(*in_flight, return_exceptions=True)
    failed = [r for r in results if isinstance(r, RecordWriteError)]
    assert failed, "some writes were in flight when the process died"
    assert all("record writer process exited" in str(r) for r in failed)
    again = await writer.write_feedback(feedback(99))
    assert again.exists()
    assert first.exists()
    assert writer._process._proc is not proc
    for path in json_files(storage):
        json.loads(path.read_bytes())  # every name that exists holds a whole record
    await writer.close()


async def test_the_writer_process_and_its_threads_run_under_sched_batch(tmp_path: Path) -> None:
    """The writer process does not preempt the server when a request wakes it (SCHED_BATCH), and neither do
    the committer threads it started; its nice value stays the server's."""
    writer = RecordWriter(tmp_path / "feedback", None, committers=4)
    await writer.write_feedback(feedback(0))
    proc = writer._process._proc
    assert proc is not None
    threads = list((Path("/proc") / str(proc.pid) / "task").iterdir())
    assert len(threads) == 5  # the reader and four committers
    assert {os.sched_getscheduler(int(t.name)) for t in threads} == {os.SCHED_BATCH}
    assert os.getpriority(os.PRIO_PROCESS, proc.pid) == os.getpriority(os.PRIO_PROCESS, 0)
    await writer.close()


async def test_one_failed_record_in_a_group_fails_alone(tmp_path: Path) -> None:
    """Requests made together are committed as one group (one write to the writer process, one reply):
    a record that cannot be written gets its own error; the others of its group are stored, each
    under its own folder, and answered as stored."""
    writer = RecordWriter(tmp_path / "feedback", None, committers=4)
    (tmp_path / "not-a-folder").write_text("x")
    good = [tmp_path / "feedback" / f"f{i}" / "r.json" for i in range(20)]
    bad = tmp_path / "not-a-folder" / "r.json"
    writes = [writer._process.write(path, b'{"n": 1}') for path in good[:10]]
    writes += [writer._process.write(bad, b"{}")]
    writes += [writer._process.write(path, b'{"n": 1}') for path in good[10:]]
    results = await asyncio.gather(*writes, return_exceptions=True)
    await writer.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1, results
    assert isinstance(errors[0], NotADirectoryError)
    assert results.index(errors[0]) == 10
    assert all(json.loads(path.read_bytes()) == {"n": 1} for path in good)
    assert temp_files(tmp_path) == []


def temp_files(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob(".*.tmp")]


async def test_temp_files_a_killed_writer_left_are_removed_when_the_next_one_starts(tmp_path: Path) -> None:
    """After SIGKILLs mid-write, the next writer start removes every `.<uuid>.json.tmp` (whole user text,
    never acknowledged); the records it had finished stay."""
    feedback_dir, transcripts_dir = tmp_path / "feedback", tmp_path / "transcripts"
    orphan = transcripts_dir / "user" / "conversation" / ".0f3b8e0c.json.tmp"
    orphan.parent.mkdir(parents=True)
    orphan.write_text('{"user_question": "left by a writer killed earlier"}')
    writer = RecordWriter(feedback_dir, transcripts_dir, committers=8)
    first = await writer.write_feedback(feedback(0))
    assert not orphan.exists()
    for round_ in range(3):
        proc = writer._process._proc
        assert proc is not None
        in_flight = [asyncio.ensure_future(writer.write_feedback(feedback(i, 4_000_000))) for i in range(16)]
        await asyncio.sleep(0.05)  # let some temp files be half written before the kill
        proc.kill()
        await asyncio.gather(*in_flight, return_exceptions=True)
        left = len(temp_files(feedback_dir))
        await writer.write_feedback(feedback(100 + round_))
        assert temp_files(feedback_dir, transcripts_dir) == [], f"round {round_}: {left} left"
    assert first.exists()
    assert len(json_files(feedback_dir)) >= 4
    await writer.close()


async def test_a_restarted_writer_leaves_a_live_siblings_writes_alone(tmp_path: Path) -> None:
    """Item 23.10: two workers' writers share the folders. One writer is killed and started again five
    times while the other writes large records without pause: every write of the other succeeds (the
    restart's sweep removed every temp file older than itself, a live sibling's in-progress write too)."""
    feedback_dir, transcripts_dir = tmp_path / "feedback", tmp_path / "transcripts"
    steady = RecordWriter(feedback_dir, transcripts_dir, committers=4)
    restarted = RecordWriter(feedback_dir, transcripts_dir, committers=4)
    await restarted.write_feedback(feedback(0))
    stop = asyncio.Event()

    async def keep_writing() -> list[Path]:
        written = []
        while not stop.is_set():
            batch = [steady.write_feedback(feedback(i, 2_000_000)) for i in range(4)]
            written += await asyncio.gather(*batch)
        return written

    writing = asyncio.ensure_future(keep_writing())
    try:
        for round_ in range(5):
            proc = restarted._process._proc
            assert proc is not None
            await until_temp_files(feedback_dir, writing)  # the steady writer is mid-write
            proc.kill()
            await proc.wait()
            await restarted.write_feedback(feedback(10 + round_))  # starts a new writer: its sweep
        stop.set()
        written = await writing  # raises the RecordWriteError of any write that failed
    finally:
        stop.set()
        await asyncio.gather(writing, return_exceptions=True)
        await steady.close()
        await restarted.close()
    assert len(written) >= 4
    assert all(path.exists() for path in written)


async def until_temp_files(folder: Path, writing: asyncio.Future[list[Path]]) -> None:
    async def any_temp_file() -> bool:
        if writing.done():
            writing.result()  # a failed write fails the test now
            raise AssertionError("the steady writer stopped")
        return bool(await asyncio.to_thread(temp_files, folder))

    await until(any_temp_file, "a temp file of a write in progress")


def test_an_unusable_storage_directory_is_a_storage_error(tmp_path: Path, small_tmpfs: object) -> None:
    """A read-only file system or a file in the way is refused at start-up with the reason."""
    readonly = small_tmpfs("ro", "size=64k,ro")  # type: ignore[operator]
    with pytest.raises(StorageError, match="Read-only file system"):
        prepare_storage("feedback_storage", readonly / "feedback")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="feedback_storage directory"):
        prepare_storage("feedback_storage", blocker / "feedback")


def test_user_hash_is_keyed_stable_and_not_the_plain_sha(tmp_path: Path) -> None:
    """The same user hashes the same under one key, differently under another, never as plain SHA-256."""
    import hashlib

    first = UserHasher.from_state_dir(tmp_path / "a")
    again = UserHasher.from_state_dir(tmp_path / "a")
    other = UserHasher.from_state_dir(tmp_path / "b")
    assert first("alice") == again("alice")
    assert first("alice") != first("bob")
    assert first("alice") != other("alice")
    assert first("alice") != hashlib.sha256(b"alice").hexdigest()
    assert len(first("alice")) == 64
    assert (tmp_path / "a" / "user-hash.key").stat().st_mode & 0o777 == 0o600


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        UserHasher(b"short")


def test_every_record_kind_names_a_config_key_an_archive_folder_and_a_layout_of_its_depth() -> None:
    """The on-disk contract's table: what the writer, the collector and the ingest all read."""
    from lightspeed_common.config import UserDataCollectionConfig
    from lightspeed_common.records import BY_FOLDER, RECORD_KINDS

    fields = UserDataCollectionConfig.model_fields
    for kind in RECORD_KINDS:
        assert kind.storage_key in fields
        assert kind.layout.count("/") == kind.depth
        assert BY_FOLDER[kind.folder] is kind
    assert sorted(BY_FOLDER) == ["feedback", "transcripts"]  # lightspeed-stack's archive folders
    assert TRANSCRIPT.layout == "<user_id>/<conversation_id>/<uuid4>.json"  # lightspeed-stack's


async def test_the_writer_puts_each_record_where_its_kind_says(tmp_path: Path) -> None:
    """RecordKind.path is the one statement of the layout: the files land at its depth, in the folders
    the record's own identity fields name."""
    writer = RecordWriter(tmp_path / "feedback", tmp_path / "transcripts", committers=1)
    try:
        in_feedback = await writer.write_feedback(feedback(1))
        in_transcripts = await writer.write_transcript(transcript("hash1", "conv1"))
    finally:
        await writer.close()
    written = ((FEEDBACK, tmp_path / "feedback", in_feedback), (TRANSCRIPT, tmp_path / "transcripts", in_transcripts))
    for kind, root, path in written:
        relative = path.relative_to(root)
        assert len(relative.parts) == kind.depth + 1
        identity = kind.identity_fields(json.loads(path.read_text()))
        assert list(relative.parts[:-1]) == [identity[name] for name in kind.directories]
    assert in_transcripts.relative_to(tmp_path / "transcripts").parts[:2] == ("hash1", "conv1")


@pytest.mark.parametrize("unsafe", ["", "..", "a/b", "."])
def test_a_record_whose_identity_cannot_name_a_folder_gets_no_path(tmp_path: Path, unsafe: str) -> None:
    with pytest.raises(ValueError, match="cannot name a folder"):
        TRANSCRIPT.path(tmp_path, {"metadata": {"user_id": unsafe, "conversation_id": "c"}}, "id")


def test_make_dirs_names_each_folder_that_gained_an_entry_for_the_group_to_fsync(tmp_path: Path) -> None:
    """A new conversation's folders are made without an fsync each: the folders that gained an entry come
    back, outermost first, for the writer to fsync with its group; folders already there gain nothing."""
    (tmp_path / "transcripts").mkdir()
    conversation = tmp_path / "transcripts" / "user" / "conversation"
    assert make_dirs(conversation) == [tmp_path / "transcripts", tmp_path / "transcripts" / "user"]
    assert conversation.is_dir()
    assert make_dirs(conversation) == []
    assert make_dirs(conversation.parent / "another") == [tmp_path / "transcripts" / "user"]
