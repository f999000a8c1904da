"""lightspeed-ingest's upload endpoint: the ingress contract, durable storage, safety and de-duplication."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import os
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ingest.context import INGEST
from tests.ingest_support import (
    ARCHIVE_TYPE,
    IngestFactory,
    admin_get,
    member,
    records_archive,
    stored_archives,
    tar_gz,
    upload,
)


async def test_an_upload_is_stored_whole_and_indexed(make_ingest: IngestFactory, tmp_path: Path) -> None:
    client = await make_ingest()
    archive = records_archive("conv-1")
    resp = await upload(client, archive, "batch-0001")
    assert resp.status == 202, await resp.text()
    body = await resp.json()
    assert body["request_id"] == "batch-0001"
    assert body["upload"] == {
        "account_number": "",
        "org_id": "",
        "service": "lightspeed",
        "category": "periodic",
        "records": 2,
        "new_records": 2,
        "duplicate_records": 0,
        "duplicate_request": False,
        "size": len(archive),
    }
    [stored] = stored_archives(tmp_path / "ingest")
    assert stored.name == "batch-0001.tar.gz"
    assert stored.read_bytes() == archive
    assert list((tmp_path / "ingest" / "incoming").iterdir()) == []
    listing = await admin_get(client, "/api/admin/v1/uploads")
    assert listing["totals"] == {
        "uploads": 1,
        "bytes": len(archive),
        "records": 2,
        "new_records": 2,
        "duplicate_records": 0,
        "feedback_records": 1,
        "transcripts_records": 1,
    }
    [listed] = listing["uploads"]
    assert listed["request_id"] == "batch-0001"
    # An operator can check a kept archive against the listing: `sha256sum archives/<archive>`.
    assert (tmp_path / "ingest" / "archives" / listed["archive"]) == stored
    assert listed["sha256"] == hashlib.sha256(archive).hexdigest()


async def test_a_resent_batch_is_not_stored_or_counted_twice(make_ingest: IngestFactory, tmp_path: Path) -> None:
    """The collector re-sends a batch under the same request id after a lost reply: 202, nothing new."""
    client = await make_ingest()
    archive = records_archive("conv-1")
    assert (await upload(client, archive, "batch-1")).status == 202
    again = await upload(client, archive, "batch-1")
    assert again.status == 202
    assert (await again.json())["upload"]["duplicate_request"] is True
    # The same records in a batch with a new id (a collector that lost its journal): stored, counted as duplicates.
    other = await upload(client, archive, "batch-2")
    counted = (await other.json())["upload"]
    assert (counted["records"], counted["new_records"], counted["duplicate_records"]) == (2, 0, 2)
    # One new record among old ones.
    mixed = await upload(client, records_archive("conv-1", feedback_text="changed"), "batch-3")
    assert (await mixed.json())["upload"]["new_records"] == 1
    totals = (await admin_get(client, "/api/admin/v1/uploads"))["totals"]
    assert totals == {
        "uploads": 3,
        "bytes": totals["bytes"],
        "records": 6,
        "new_records": 3,
        "duplicate_records": 3,
        "feedback_records": 2,
        "transcripts_records": 1,
    }
    assert [p.name for p in stored_archives(tmp_path / "ingest")] == [
        "batch-1.tar.gz",
        "batch-2.tar.gz",
        "batch-3.tar.gz",
    ]


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("wrong-token", 403)],
)
async def test_uploads_need_a_configured_token(
    make_ingest: IngestFactory, tmp_path: Path, token: str | None, status: int
) -> None:
    client = await make_ingest()
    resp = await upload(client, records_archive(), token=token)
    assert resp.status == status
    assert "detail" in await resp.json()
    assert stored_archives(tmp_path / "ingest") == []


async def test_without_any_token_configured_every_upload_is_refused(make_ingest: IngestFactory) -> None:
    client = await make_ingest(uploads={"tokens": []})
    resp = await upload(client, records_archive(), token="anything")
    assert resp.status == 403
    assert "No upload key is configured" in (await resp.json())["detail"]["response"]


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [
        ("application/vnd.redhat.advisor.periodic+tar", "service 'advisor' is not accepted"),
        ("application/gzip", "must be application/vnd.redhat.<service>.<category>"),
    ],
)
async def test_unlisted_services_and_other_types_are_415(
    make_ingest: IngestFactory, tmp_path: Path, content_type: str, reason: str
) -> None:
    client = await make_ingest()
    resp = await upload(client, records_archive(), content_type=content_type)
    assert resp.status == 415
    assert reason in (await resp.json())["detail"]["cause"]
    assert stored_archives(tmp_path / "ingest") == []


async def test_the_part_may_be_named_upload_and_any_allowed_service_works(make_ingest: IngestFactory) -> None:
    client = await make_ingest(uploads={"allowed_services": ["lightspeed", "openshift-lightspeed"]})
    resp = await upload(
        client,
        records_archive(),
        part="upload",
        content_type="application/vnd.redhat.openshift-lightspeed.periodic+tgz",
    )
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["upload"]["service"] == "openshift-lightspeed"


async def test_an_archive_over_the_size_cap_is_413_and_leaves_nothing(
    make_ingest: IngestFactory, tmp_path: Path
) -> None:
    client = await make_ingest(uploads={"max_upload_bytes": 4096})
    data = b'{"a": "' + os.urandom(8192).hex().encode() + b'"}'
    big = tar_gz([(member("feedback/x.json", data), data)])
    assert len(big) > 4096
    resp = await upload(client, big)
    assert resp.status == 413
    assert stored_archives(tmp_path / "ingest") == []
    assert list((tmp_path / "ingest" / "incoming").iterdir()) == []


async def test_bodies_that_are_not_uploads_are_400(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    headers = {"Authorization": "Bearer collector-token"}
    plain = await client.post("/api/ingress/v1/upload", data=b"raw bytes", headers=headers)
    assert plain.status == 400
    assert "multipart" in (await plain.json())["detail"]["response"]
    resp = await upload(client, records_archive(), part="attachment")
    assert resp.status == 400
    assert "no part named 'file'" in (await resp.json())["detail"]["cause"]
    bad_id = await upload(client, records_archive(), request_id="../../etc")
    assert bad_id.status == 400


async def test_a_part_whose_headers_cannot_be_read_is_400(make_ingest: IngestFactory) -> None:
    """Item 23.20 (found by schemathesis): a control byte in a part's name was a 500."""
    client = await make_ingest()
    body = (
        b'--b0\r\nContent-Disposition: form-data; name="x\x01y"\r\n\r\nvalue\r\n--b0\r\n'
        b'Content-Disposition: form-data; name="file"; filename="f"\r\nContent-Type: '
        + ARCHIVE_TYPE.encode()
        + b"\r\n\r\n"
        + records_archive()
        + b"\r\n--b0--\r\n"
    )
    headers = {"Authorization": "Bearer collector-token", "Content-Type": "multipart/form-data; boundary=b0"}
    resp = await client.post("/api/ingress/v1/upload", data=body, headers=headers)
    assert resp.status == 400
    assert (await resp.json())["detail"]["response"] == "Invalid multipart body"


def _pax_bomb() -> bytes:
    info = member("feedback/x.json", b"{}")
    info.pax_headers = {"comment": "x" * (3 * 1024 * 1024)}
    return tar_gz([(info, b"{}")])


def _raw_tar(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return raw.getvalue()


ZEROS = b"0" * (3 * 1024 * 1024)
DEEP = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
CRAFTED: dict[str, tuple[bytes, str]] = {
    "absolute path": (tar_gz([(member("/etc/feedback/x.json"), b"{}")]), "absolute path"),
    "parent traversal": (tar_gz([(member("feedback/../../x.json"), b"{}")]), "'..' in the path"),
    "symlink": (
        tar_gz([(member("feedback/x.json", kind=tarfile.SYMTYPE, linkname="/etc/passwd"), b"")]),
        "not links or devices",
    ),
    "hard link": (
        tar_gz([(member("feedback/x.json", kind=tarfile.LNKTYPE, linkname="feedback/y.json"), b"")]),
        "not links or devices",
    ),
    "character device": (tar_gz([(member("feedback/x.json", kind=tarfile.CHRTYPE), b"")]), "not links or devices"),
    "fifo": (tar_gz([(member("feedback/x.json", kind=tarfile.FIFOTYPE), b"")]), "not links or devices"),
    "outside the record folders": (
        tar_gz([(member("etc/x.json"), b"{}")]),
        "under feedback/, transcripts/ or erasures/",
    ),
    "not a json name": (tar_gz([(member("feedback/x.sh", b"{}"), b"{}")]), "not a .json record"),
    "hidden temporary file": (tar_gz([(member("feedback/.x.json.tmp", b"{}"), b"{}")]), "not a .json record"),
    "invalid json": (tar_gz([(member("feedback/x.json", b"{nope"), b"{nope")]), "not valid JSON"),
    "json array": (tar_gz([(member("feedback/x.json", b"[1]"), b"[1]")]), "not a JSON object"),
    # Item 23.5: deeper than Python's parser goes (RecursionError was a 500, and the collector retried it forever).
    "json nested too deeply": (tar_gz([(member("feedback/x.json", DEEP), DEEP)]), "not valid JSON"),
    "not gzip": (b"PK\x03\x04 a zip file", "not a readable tar.gz"),
    "truncated": (records_archive()[:-40], "not a readable tar.gz"),
    "gzip of garbage": (gzip.compress(b"x" * 4096), "not a readable tar.gz"),
    "empty archive": (tar_gz([]), "holds no records"),
    "member over the record cap": (tar_gz([(member("feedback/x.json", ZEROS), ZEROS)]), "larger than 1048576 bytes"),
    "too many members": (
        tar_gz([(member(f"feedback/{i}.json", b"{}"), b"{}") for i in range(60)]),
        "more than 50 members",
    ),
    "decompression bomb": (
        gzip.compress(
            _raw_tar([(member(f"feedback/{i}.json", b"{}" + b" " * 900_000), b"{}" + b" " * 900_000) for i in range(6)])
        ),
        "decompresses to more than 4194304 bytes",
    ),
    "oversized pax header": (_pax_bomb(), "tar header or member is larger"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
async def test_crafted_archives_are_refused_and_nothing_is_kept(
    make_ingest: IngestFactory, tmp_path: Path, case: str
) -> None:
    client = await make_ingest(
        uploads={"max_record_bytes": 1024 * 1024, "max_records": 50, "max_uncompressed_bytes": 4 * 1024 * 1024}
    )
    archive, reason = CRAFTED[case]
    resp = await upload(client, archive)
    body: dict[str, Any] = await resp.json()
    assert resp.status == 400, body
    assert body["detail"]["response"] == "Invalid archive"
    assert reason in body["detail"]["cause"]
    assert stored_archives(tmp_path / "ingest") == []
    assert list((tmp_path / "ingest" / "incoming").iterdir()) == []
    assert (await admin_get(client, "/api/admin/v1/uploads"))["totals"]["uploads"] == 0
    # The same request id can be used again once the batch is fixed.
    assert (await upload(client, records_archive())).status == 202


async def test_directories_and_dot_prefixes_are_fine(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    data = b'{"conversation_id": "c"}'
    archive = tar_gz(
        [
            (member("feedback", kind=tarfile.DIRTYPE), b""),
            (member("./feedback/a.json", data), data),
        ]
    )
    resp = await upload(client, archive)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["upload"]["records"] == 1


async def test_start_up_removes_what_a_crash_left_and_keeps_what_was_acknowledged(
    make_ingest: IngestFactory, tmp_path: Path, ingest_database: dict[str, Any]
) -> None:
    state = tmp_path / "ingest"
    first = await make_ingest(state)
    assert (await upload(first, records_archive(), "kept")).status == 202
    await first.close()
    # A crash mid-upload (temporary file) and one between the rename and the commit (no row), an hour ago.
    partial = state / "incoming" / "abc.tmp"
    partial.write_bytes(b"partial")
    orphan = state / "archives" / "2026" / "01" / "01" / "never-acknowledged.tar.gz"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(records_archive())
    an_hour_ago = time.time() - 3600
    for path in (partial, orphan):
        os.utime(path, (an_hour_ago, an_hour_ago))
    # And what another node sharing the database and the directory may be receiving right now.
    receiving = state / "incoming" / "another-node.tmp"
    receiving.write_bytes(b"arriving")
    publishing = state / "archives" / "2026" / "01" / "01" / "another-node.tar.gz"
    publishing.write_bytes(records_archive())
    second = await make_ingest(state)
    shared = bool(ingest_database)  # PostgreSQL: other nodes may be writing; SQLite: this node alone
    expected = ["another-node.tar.gz", "kept.tar.gz"] if shared else ["kept.tar.gz"]
    assert sorted(p.name for p in stored_archives(state)) == expected
    assert list((state / "incoming").iterdir()) == ([receiving] if shared else [])
    listing = await admin_get(second, "/api/admin/v1/uploads")
    assert [u["request_id"] for u in listing["uploads"]] == ["kept"]
    # The never-acknowledged batch is accepted when its sender tries again.
    assert (await upload(second, records_archive("other"), "never-acknowledged")).status == 202


async def test_a_full_disk_is_507_and_leaves_nothing_half_written(make_ingest: IngestFactory, small_tmpfs: Any) -> None:
    state = small_tmpfs("ingest-state", "size=256k")
    client = await make_ingest(state)
    data = b'{"a": "' + os.urandom(256 * 1024).hex().encode() + b'"}'
    archive = tar_gz([(member("feedback/x.json", data), data)])  # about 300 KiB compressed
    resp = await upload(client, archive, "too-big-for-disk")
    assert resp.status == 507
    assert stored_archives(state) == []
    assert list((state / "incoming").iterdir()) == []
    assert (await upload(client, records_archive(), "fits")).status == 202


async def test_upload_metrics_count_results(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    await upload(client, records_archive(), "m-1")
    await upload(client, records_archive(), "m-1")
    await upload(client, b"junk", "m-2")
    text = await (await client.get("/metrics")).text()
    assert 'lightspeed_ingest_uploads_total{result="stored"} 1.0' in text
    assert 'lightspeed_ingest_uploads_total{result="duplicate_request"} 1.0' in text
    assert 'lightspeed_ingest_uploads_total{result="rejected"} 1.0' in text
    assert 'lightspeed_ingest_records_total{result="new"} 2.0' in text


async def test_an_oversized_metadata_part_is_413(make_ingest: IngestFactory, tmp_path: Path) -> None:
    client = await make_ingest()
    form = aiohttp.FormData()
    form.add_field(
        "file", records_archive(), filename="b.tar.gz", content_type="application/vnd.redhat.lightspeed.periodic+tar"
    )
    form.add_field("metadata", "x" * 70_000, content_type="application/json")
    resp = await client.post("/api/ingress/v1/upload", data=form, headers={"Authorization": "Bearer collector-token"})
    assert resp.status == 413
    assert "'metadata' is larger than 65536 bytes" in (await resp.json())["detail"]["cause"]
    assert stored_archives(tmp_path / "ingest") == []
    assert list((tmp_path / "ingest" / "incoming").iterdir()) == []


async def held_upload(client: Any, archive: bytes, request_id: str, gate: asyncio.Event) -> aiohttp.ClientResponse:
    """An upload whose body stops after 200 bytes until `gate` is set."""
    boundary = "held-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="held.tar.gz"\r\n'
            "Content-Type: application/vnd.redhat.lightspeed.periodic+tar\r\n\r\n"
        ).encode()
        + archive
        + f"\r\n--{boundary}--\r\n".encode()
    )

    async def held() -> AsyncIterator[bytes]:
        yield body[:200]
        await gate.wait()
        yield body[200:]

    headers = {
        "Authorization": "Bearer collector-token",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "x-rh-insights-request-id": request_id,
    }
    response: aiohttp.ClientResponse = await client.post("/api/ingress/v1/upload", data=held(), headers=headers)
    return response


async def test_uploads_beyond_the_concurrency_limit_are_told_to_retry(make_ingest: IngestFactory) -> None:
    client = await make_ingest(uploads={"max_concurrent": 1})
    ingest = client.app[INGEST]
    gate = asyncio.Event()
    slow = asyncio.create_task(held_upload(client, records_archive("slow"), "slow", gate))
    for _ in range(500):  # the handler has started once it holds the only upload slot
        if ingest.upload_slots.locked():
            break
        await asyncio.sleep(0.01)
    assert ingest.upload_slots.locked()
    busy = await upload(client, records_archive("other"), "busy")
    assert busy.status == 503
    assert busy.headers["Retry-After"] == "5"
    gate.set()
    assert (await slow).status == 202
    assert not ingest.upload_slots.locked()
    assert (await upload(client, records_archive("other"), "busy")).status == 202


async def test_the_same_batch_arriving_twice_at_once_is_stored_and_counted_once(
    make_ingest: IngestFactory, tmp_path: Path
) -> None:
    """Both copies pass the "already stored?" check before either is stored; the second to commit
    hears the storage's DuplicateUpload and answers 202 for the copy that was kept."""
    client = await make_ingest()
    archive = records_archive("twice")
    gate = asyncio.Event()
    first = asyncio.create_task(held_upload(client, archive, "twice", gate))
    incoming = tmp_path / "ingest" / "incoming"
    for _ in range(500):  # the first copy is past the check once its archive is being received
        if any(incoming.iterdir()):
            break
        await asyncio.sleep(0.01)
    assert any(incoming.iterdir())
    second = await upload(client, archive, "twice")
    assert second.status == 202
    assert (await second.json())["upload"]["new_records"] == 2
    gate.set()
    late = await first
    assert late.status == 202, await late.text()
    assert (await late.json())["upload"]["duplicate_request"] is True
    totals = (await admin_get(client, "/api/admin/v1/uploads"))["totals"]
    assert (totals["uploads"], totals["records"]) == (1, 2)
    assert len(stored_archives(tmp_path / "ingest")) == 1
    assert list(incoming.iterdir()) == []
