"""The spool's file work in bulk: claiming across folders, reading records, counting them, deleting a batch."""

from __future__ import annotations

import os
from pathlib import Path

from collector.discovery import count_records, iter_records, scan
from collector.spool import Spool, read_record, remove_members


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


def test_a_claim_across_many_folders_moves_every_record_once(tmp_path: Path) -> None:
    transcripts = tmp_path / "transcripts"
    relpaths = make_tree(transcripts, folders=12, per_folder=5)
    spool = Spool(tmp_path / "spool", {"transcripts": transcripts})
    spool.prepare()
    found = scan(spool.roots)
    (transcripts / relpaths[7]).unlink()  # gone between the scan and the claim: skipped, not an error
    moved = spool.claim("b1", found)
    expected = sorted(f"transcripts/{r}" for r in relpaths if r != relpaths[7])
    assert sorted(moved) == expected
    assert spool.members("b1") == expected
    assert list(iter_records(spool.roots)) == []
    for member in expected:
        assert (spool.claimed / "b1" / member).read_text().startswith('{"folder"')


def test_removing_a_batchs_members_leaves_what_is_not_one(tmp_path: Path) -> None:
    base = tmp_path / "batch"
    members = [f"transcripts/{r}" for r in make_tree(base / "transcripts", folders=9, per_folder=4)]
    stray = base / "transcripts" / "user0" / "conv0" / "notes.txt"
    stray.write_text("not a member")
    remove_members(base, [*members, "transcripts/user1/conv1/already-gone.json"])
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
