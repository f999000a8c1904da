"""The ingest deletes what it holds of an erased user: on an `erasure` record from the collector, or through
the admin route, every archive holding the user's records is rewritten without them (one left empty goes)
and the index follows, on SQLite and on PostgreSQL."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path
from typing import Any

from ingest.context import INGEST
from ingest.erasure import apply_pending, rewrite_archive
from lightspeed_common.records import Erasure, parse_time
from tests.ingest_support import (
    Client,
    IngestFactory,
    admin_get,
    admin_headers,
    everything_stored,
    member,
    stored_archives,
    tar_gz,
    upload,
)

A, B = "a1" * 32, "b2" * 32
ERASED_AT = "2026-12-01T10:00:00+00:00"


def feedback(user: str, when: str = "2026-11-30 09:00:00+00:00") -> bytes:
    return json.dumps({"user_id": user, "timestamp": when, "conversation_id": "c", "user_feedback": "ok"}).encode()


def transcript(user: str) -> bytes:
    metadata = {"user_id": user, "conversation_id": "c", "timestamp": "2026-11-30T09:00:01+00:00"}
    return json.dumps({"metadata": metadata, "redacted_query": "q", "llm_response": "r"}).encode()


def archive(*records: tuple[str, bytes]) -> bytes:
    return tar_gz([(member(name, data), data) for name, data in records])


def erasure_archive(user: str = A, erased_at: str = ERASED_AT) -> bytes:
    record = json.dumps({"kind": "erasure", "user_id": user, "erased_at": erased_at}).encode()
    return archive((f"erasures/{user}.json", record))


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def archives_holding(state_dir: Path, user: str) -> list[str]:
    return [p.name for p in stored_archives(state_dir) if user.encode() in gzip.decompress(p.read_bytes())]


async def uploaded(client: Client, data: bytes, request_id: str) -> None:
    resp = await upload(client, data, request_id)
    assert resp.status == 202, await resp.text()


async def three_batches(client: Client) -> None:
    await uploaded(
        client,
        archive(
            ("feedback/f1.json", feedback(A)),
            ("feedback/f2.json", feedback(B)),
            (f"transcripts/{A}/c/t1.json", transcript(A)),
        ),
        "mixed",
    )
    await uploaded(client, archive(("feedback/f3.json", feedback(A, "2026-11-30T09:30:00Z"))), "only-a")
    await uploaded(client, archive((f"transcripts/{B}/c/t2.json", transcript(B))), "only-b")


async def test_an_erasure_record_deletes_the_users_records_from_every_archive_and_the_index(
    make_ingest: IngestFactory, tmp_path: Path, ingest_database: dict[str, Any]
) -> None:
    client = await make_ingest()
    state = tmp_path / "ingest"
    await three_batches(client)
    only_b = (state / "archives").rglob("only-b.tar.gz").__next__().read_bytes()
    await uploaded(client, erasure_archive(), "erasure-1")
    await apply_pending(client.app[INGEST])  # after the erasure task's pass, if it was running
    assert archives_holding(state, A) == []
    assert A.encode() not in everything_stored(state, ingest_database)
    assert sorted(p.name for p in stored_archives(state)) == ["mixed.tar.gz", "only-b.tar.gz"]
    mixed = next(p for p in stored_archives(state) if p.name == "mixed.tar.gz")
    assert members(mixed) == {"feedback/f2.json": feedback(B)}
    assert next(p for p in stored_archives(state) if p.name == "only-b.tar.gz").read_bytes() == only_b
    listing = {u["request_id"]: u for u in (await admin_get(client, "/api/admin/v1/uploads?limit=10"))["uploads"]}
    assert set(listing) == {"mixed", "only-b"}
    assert (listing["mixed"]["records"], listing["mixed"]["new_records"], listing["mixed"]["bytes"]) == (
        1,
        1,
        mixed.stat().st_size,
    )
    [logged] = (await admin_get(client, "/api/admin/v1/erasures"))["erasures"]
    assert logged["via"] == "collector"
    assert logged["done_at"] is not None
    # A's two feedback records and transcript, and the erasure record itself; its archive went too.
    assert (logged["records"], logged["archives_rewritten"], logged["archives_removed"]) == (4, 1, 2)
    metrics = await (await client.get("/metrics")).text()
    assert 'lightspeed_ingest_erasure_removed_total{what="records"} 4.0' in metrics


async def test_records_written_after_the_erasure_are_the_users_new_data_and_stay(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    later = feedback(A, "2026-12-01 10:00:01+00:00")
    await uploaded(client, archive(("feedback/old.json", feedback(A)), ("feedback/new.json", later)), "both")
    await uploaded(client, erasure_archive(), "erasure-1")
    await apply_pending(client.app[INGEST])
    [kept] = stored_archives(client.app[INGEST].config.state_dir)
    assert members(kept) == {"feedback/new.json": later}


async def test_the_admin_route_erases_by_hash_and_refuses_anything_else(
    make_ingest: IngestFactory, tmp_path: Path
) -> None:
    client = await make_ingest()
    await three_batches(client)
    resp = await client.post("/api/admin/v1/erasures", json={"user_hash": A}, headers=admin_headers())
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"erased": {"records": 3, "archives_rewritten": 1, "archives_removed": 1}}
    assert archives_holding(tmp_path / "ingest", A) == []
    assert len(archives_holding(tmp_path / "ingest", B)) == 2
    for body in ({"user_hash": "someone"}, {"user": A}, [A]):
        resp = await client.post("/api/admin/v1/erasures", json=body, headers=admin_headers())
        assert resp.status == 400
        assert "64 hexadecimal digits" in (await resp.json())["detail"]["cause"]
    assert (await client.post("/api/admin/v1/erasures", json={"user_hash": A})).status == 401


async def test_an_erasure_record_without_a_hash_or_a_time_refuses_the_upload(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    for record, reason in (
        ({"kind": "erasure", "user_id": "bob", "erased_at": ERASED_AT}, "keyed user hash"),
        ({"kind": "erasure", "user_id": A}, "erased_at"),
    ):
        data = json.dumps(record).encode()
        resp = await upload(client, archive((f"erasures/{A}.json", data)), "bad")
        assert resp.status == 400
        assert reason in (await resp.json())["detail"]["cause"]


async def test_a_pass_that_died_after_rewriting_an_archive_is_finished_by_the_next(
    make_ingest: IngestFactory, tmp_path: Path, ingest_database: dict[str, Any]
) -> None:
    client = await make_ingest()
    ingest = client.app[INGEST]
    state = tmp_path / "ingest"
    await three_batches(client)
    erased_at = parse_time(ERASED_AT)
    assert erased_at is not None
    await ingest.db.run(ingest.db.storage.request_erasure, A, erased_at, "admin", erased_at)
    # What the pass did before it died: the mixed archive rewritten in place, its index not yet.
    mixed = next(p for p in stored_archives(state) if p.name == "mixed.tar.gz")
    target = ingest.archives.incoming()
    rewrite_archive(mixed, target, Erasure(A, erased_at))
    ingest.archives.publish(target, mixed.relative_to(state / "archives").as_posix())
    counts = await apply_pending(ingest)
    assert list(counts.values()) == [{"records": 1, "archives_rewritten": 0, "archives_removed": 1}]
    assert A.encode() not in everything_stored(state, ingest_database)
    listing = {u["request_id"]: u for u in (await admin_get(client, "/api/admin/v1/uploads"))["uploads"]}
    assert (listing["mixed"]["records"], listing["mixed"]["bytes"]) == (1, mixed.stat().st_size)


async def test_uploads_indexed_before_erasures_existed_are_read_whole_and_indexed_on_the_way(
    make_ingest: IngestFactory, tmp_path: Path
) -> None:
    client = await make_ingest()
    storage = client.app[INGEST].db.storage
    await three_batches(client)

    def as_before_the_migration(session: Any) -> None:  # what migration 2 leaves for older uploads
        session.execute("DELETE FROM upload_users")
        session.execute("UPDATE uploads SET users_indexed = 0")

    storage._write(as_before_the_migration)
    assert len(storage.erasure_uploads(A)) == 3  # every upload may hold A's records
    resp = await client.post("/api/admin/v1/erasures", json={"user_hash": A}, headers=admin_headers())
    assert (await resp.json())["erased"] == {"records": 3, "archives_rewritten": 1, "archives_removed": 1}
    assert archives_holding(tmp_path / "ingest", A) == []
    assert storage.erasure_uploads(A) == []  # read once: indexed now
    assert [request_id for request_id, _ in storage.erasure_uploads(B)] == ["mixed", "only-b"]
