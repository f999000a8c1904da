"""The collector's tar.gz writer produces archives that tar and tarfile read back exactly."""

from __future__ import annotations

import io
import random
import subprocess
import tarfile
from pathlib import Path

import pytest

from collector.discovery import RecordFile, plan_batches
from collector.tarstream import TarGzWriter, ustar_header

NAMES = [
    "feedback/0a1b.json",
    "transcripts/" + "f" * 64 + "/conv-0001/" + "0" * 36 + ".json",  # > 100 bytes: the USTAR prefix
    "transcripts/" + "/".join(["deep"] * 60) + "/x.json",  # > 255 bytes: a PAX header
    "feedback/ünïcode.json",  # not ASCII: a PAX header
    "feedback/" + "y" * 120 + ".json",  # a single long component: a PAX header
]


def test_members_round_trip_through_tarfile_and_gnu_tar(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with TarGzWriter(buffer, mtime=1_700_000_000) as archive:
        for i, name in enumerate(NAMES):
            archive.add(name, f'{{"n": {i}}}'.encode() * (i * 200 + 1))
    data = buffer.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as reader:
        found = {m.name: reader.extractfile(m).read() for m in reader.getmembers()}  # type: ignore[union-attr]
    assert found == {name: f'{{"n": {i}}}'.encode() * (i * 200 + 1) for i, name in enumerate(NAMES)}
    (tmp_path / "a.tar.gz").write_bytes(data)
    listed = subprocess.run(["tar", "tzf", str(tmp_path / "a.tar.gz")], capture_output=True, text=True, check=True)
    assert listed.stdout.splitlines() == NAMES


def test_each_header_is_tarfiles_own_byte_for_byte() -> None:
    """The header built from a template is the one tarfile writes for the same member: USTAR where the name
    fits (cut into prefix and name where tarfile cuts it), PAX where it does not or is not ASCII."""
    rng = random.Random(28)
    generated = ["/".join("n" * rng.randint(1, 70) for _ in range(rng.randint(1, 8))) for _ in range(400)]
    for name in [*NAMES, "x" * 100, "a/" + "y" * 100, *generated]:
        for size in (0, 1, 2345, 8**11 - 1):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = size, 1_700_000_000, 0o644
            try:
                if not name.isascii():
                    raise ValueError  # USTAR would hold its bytes, but only PAX says they are UTF-8
                expected = info.tobuf(tarfile.USTAR_FORMAT)
            except ValueError:  # the name does not fit USTAR
                expected = info.tobuf(tarfile.PAX_FORMAT)
            assert ustar_header(name, size, 1_700_000_000) == expected, (name, size)


@pytest.mark.parametrize(("max_files", "max_bytes", "expected"), [(2, 10**6, [2, 2, 1]), (10, 5120, [2, 2, 1])])
def test_batches_respect_file_and_byte_caps(max_files: int, max_bytes: int, expected: list[int]) -> None:
    """Planning is pure: caps by count and by uncompressed tar bytes; too-large records come apart."""
    records = [RecordFile("feedback", f"{i}.json", 900) for i in range(5)] + [RecordFile("feedback", "big.json", 10**7)]
    batches, oversized = plan_batches(records, max_files, max_bytes)
    assert [len(b) for b in batches] == expected
    assert [r.relpath for r in oversized] == ["big.json"]
    assert [r for b in batches for r in b] == records[:5]
