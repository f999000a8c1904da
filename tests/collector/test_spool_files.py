"""The spool's file work in bulk: claiming across folders, reading records, counting them, splitting and deleting
a batch."""

from __future__ import annotations

import os
from pathlib import Path

from collector.discovery import count_records, iter_records, scan
from collector.spool import Spool, read_record, remove_files


def make_tree(root: Path, folders: int, per_folder: int) -> list[str]:
    """Records in `folders` user/conversation folders; their relpaths."""
    relpaths = []
    for f in range(folders):
        for n in range(per_folder):
            relpath = f"user{f % 3}/conv{f}/r{n}.json"
            (root / relpath).parent.mkdir(parents=True, exist_ok=True)
            (root / relpath).write_text(f'{{"folder": {f}, "n": {n}}}')
            relpaths.append(relpath)
    return relpaths


def test_a_claim_lists_every_record_once_and_leaves_it_in_place_until_accepted(tmp_path: Path) -> None:
    transcripts = tmp_path / "transcripts"
    relpaths = make_tree(transcripts, folders=12, per_folder=5)
    spool = Spool(tmp_path / "spool", {"transcripts": transcripts})
    spool.prepare()
    sources = spool.claim("b1", scan(spool.roots))
    expected = sorted(f"transcripts/{r}" for r in relpaths)
    assert sorted(sources) == expected
    assert sources == {f"transcripts/{r}": f"{transcripts}/{r}" for r in relpaths}
    assert spool.members("b1") == expected  # read back from the manifest
    assert sorted(r.member for r in iter_records(spool.roots)) == expected  # nothing moved yet
    assert spool.pending() == ["b1"]
    spool.finish("b1", keep=False, members=expected[:-1])  # all but the last accepted
    assert [r.member for r in iter_records(spool.roots)] == expected[-1:]
    assert spool.pending() == []
    assert sorted(p.name for p in transcripts.iterdir()) == ["user2"]  # the folders it emptied are gone


def test_a_record_gone_after_its_claim_is_not_packaged(tmp_path: Path) -> None:
    """The server may erase (or expire) a claimed record: the batch ships the others."""
    feedback = tmp_path / "feedback"
    feedback.mkdir()
    for name in ("a", "b", "c"):
        (feedback / f"{name}.json").write_text(f'{{"n": "{name}"}}')
    spool = Spool(tmp_path / "spool", {"feedback": feedback})
    spool.prepare()
    spool.claim("b1", scan(spool.roots))
    (feedback / "b.json").unlink()
    package = spool.package("b1")
    assert package is not None
    assert package.members == ["feedback/a.json", "feedback/c.json"]


def test_a_split_moves_each_record_into_one_half(tmp_path: Path) -> None:
    """After a split, each record is in exactly one place: the first batch, were it sent again after a crash
    part-way, skips what has moved."""
    transcripts = tmp_path / "transcripts"
    relpaths = make_tree(transcripts, folders=3, per_folder=3)
    spool = Spool(tmp_path / "spool", {"transcripts": transcripts})
    spool.prepare()
    spool.claim("b1", scan(spool.roots))
    assert spool.split("b1", ("h1", "h2")) == ["h1", "h2"]
    halves = spool.members("h1") + spool.members("h2")
    assert sorted(halves) == sorted(f"transcripts/{r}" for r in relpaths)
    assert len(spool.members("h1")) == len(relpaths) // 2
    assert list(iter_records(spool.roots)) == []
    assert sorted(spool.pending()) == ["h1", "h2"]


def test_removing_files_leaves_what_is_not_one(tmp_path: Path) -> None:
    base = tmp_path / "batch"
    members = [f"{base}/transcripts/{r}" for r in make_tree(base / "transcripts", folders=9, per_folder=4)]
    stray = base / "transcripts" / "user0" / "conv0" / "notes.txt"
    stray.write_text("not a member")
    remove_files([*members, f"{base}/transcripts/user1/conv1/already-gone.json"])
    assert [p for p in base.rglob("*") if p.is_file()] == [stray]


def test_a_record_is_read_whole(tmp_path: Path) -> None:
    big, empty = tmp_path / "big.json", tmp_path / "empty.json"
    data = os.urandom(3 * 1024 * 1024 + 17)
    big.write_bytes(data)
    empty.write_bytes(b"")
    assert read_record(str(big)) == data
    assert read_record(str(empty)) == b""


def test_the_count_of_waiting_records_is_what_would_be_collected(tmp_path: Path) -> None:
    feedback, transcripts = tmp_path / "feedback", tmp_path / "transcripts"
    make_tree(transcripts, folders=4, per_folder=3)
    feedback.mkdir()
    (feedback / "a.json").write_text("{}")
    (feedback / ".a.json.tmp").write_text("{")  # a write in progress
    (feedback / "notes.txt").write_text("x")
    (feedback / ".hidden").mkdir()
    (feedback / ".hidden" / "b.json").write_text("{}")
    (feedback / "link.json").symlink_to(feedback / "a.json")
    (transcripts / "elsewhere").symlink_to(feedback, target_is_directory=True)
    roots = {"feedback": feedback, "transcripts": transcripts}
    assert count_records(roots) == len(list(iter_records(roots))) == 13
