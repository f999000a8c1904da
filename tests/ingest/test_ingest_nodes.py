"""Several lightspeed-ingest nodes on one PostgreSQL database and one archive directory.

Every node here is the real application on a real port; the database is a real PostgreSQL
server (tests/postgres.py), stopped and started again where a test says so.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from collector.daemon import Collector
from ingest.app import create_app as create_ingest_app
from ingest.context import INGEST
from ingest.erasure import apply_pending
from ingest.postgres_storage import MIGRATIONS, PostgresStorage
from ingest.storage import DailyLimits, contributor_hash, event_key
from lightspeed_common.config import config_from_mapping
from lightspeed_common.config_base import DatabaseConfig
from lightspeed_common.telemetry_schema import ModelRegistrationEvent
from tests.fake_llm import free_port
from tests.ingest_support import (
    ADMIN_KEY,
    TOKEN,
    Client,
    admin_get,
    feedback_record,
    ingest_config,
    member,
    records_archive,
    tar_gz,
    upload,
)
from tests.ingress import write_record
from tests.postgres import PASSWORD, PgDatabase
from tests.support import loop_pause_bound, until
from tests.telemetry_support import ago, event


async def start_node(aiohttp_client: Any, tmp_path: Path, name: str, database: PgDatabase) -> Client:
    """A node with its own state directory, the shared archive directory and the test's database."""
    config = ingest_config(
        tmp_path / name,
        database=database.section(),
        archive={"directory": str(tmp_path / "shared")},
        uploads={"tokens": [TOKEN], "max_concurrent": 32},
    )
    client: Client = await aiohttp_client(create_ingest_app(config))
    return client


@pytest.fixture
async def nodes(aiohttp_client: Any, tmp_path: Path, pg_database: PgDatabase) -> tuple[Client, Client]:
    first = await start_node(aiohttp_client, tmp_path, "node-a", pg_database)
    second = await start_node(aiohttp_client, tmp_path, "node-b", pg_database)
    return first, second


def shared_archives(tmp_path: Path) -> list[str]:
    root = tmp_path / "shared" / "archives"
    return sorted(p.name for p in root.rglob("*.tar.gz"))


async def test_a_batch_uploaded_to_two_nodes_at_once_is_stored_and_counted_once(
    nodes: tuple[Client, Client], tmp_path: Path, pg_database: PgDatabase
) -> None:
    batches = {f"batch-{n:02d}": records_archive(f"c-{n}", f"text {n}") for n in range(12)}
    # Every batch to both nodes at the same moment, as a sender retrying through a load balancer might.
    sends = [upload(node, archive, request_id) for request_id, archive in batches.items() for node in nodes]
    replies = await asyncio.gather(*sends)
    assert [r.status for r in replies] == [202] * len(sends)
    bodies = [await r.json() for r in replies]
    for request_id in batches:
        mine = [b["upload"] for b in bodies if b["request_id"] == request_id]
        assert sorted(b["duplicate_request"] for b in mine) == [False, True]
        assert [b["records"] for b in mine] == [2, 2]  # the second answers with what the first stored
    for node in nodes:
        totals = (await admin_get(node, "/api/admin/v1/uploads"))["totals"]
        assert totals["uploads"] == 12
        assert totals["new_records"] == 24  # a feedback and a transcript per batch, each counted once
        assert totals["duplicate_records"] == 0
    assert shared_archives(tmp_path) == [f"{request_id}.tar.gz" for request_id in sorted(batches)]
    assert pg_database.query("SELECT COUNT(*) FROM records") == [(24,)]


async def test_the_same_records_in_different_batches_on_two_nodes_are_indexed_once(
    nodes: tuple[Client, Client], pg_database: PgDatabase
) -> None:
    """Two collectors' batches that share records (a re-packaged spool), at once on two nodes."""
    records = [(f"feedback/fb-{n}.json", feedback_record(f"c-{n}")) for n in range(40)]
    shared = [(member(name, data), data) for name, data in records]
    first, second = nodes
    replies = await asyncio.gather(
        upload(first, tar_gz(shared), "from-a"), upload(second, tar_gz(list(reversed(shared))), "from-b")
    )
    assert [r.status for r in replies] == [202, 202]
    bodies = [(await r.json())["upload"] for r in replies]
    assert sum(b["new_records"] for b in bodies) == 40
    assert sum(b["duplicate_records"] for b in bodies) == 40
    assert pg_database.query("SELECT COUNT(*) FROM records") == [(40,)]


async def test_telemetry_sent_to_both_nodes_is_counted_once(
    nodes: tuple[Client, Client], pg_database: PgDatabase
) -> None:
    events = [event(ago(minutes=n + 1), "shared-model") for n in range(30)]
    replies = await asyncio.gather(*(node.post("/api/v1/telemetry", json=events) for node in nodes))
    bodies = [await r.json() for r in replies]
    assert [r.status for r in replies] == [200, 200]
    # Both answer every event accepted (a re-send is acknowledged); only one node counted each.
    assert [b["accepted"] for b in bodies] == [30, 30]
    assert sum(b["duplicates"] for b in bodies) == 30
    for node in nodes:
        counted = (await admin_get(node, "/api/admin/v1/models"))["models"]
        assert [(m["model_name"], m["events"], m["clients"]) for m in counted] == [("shared-model", 30, 1)]


def node_process(tmp_path: Path, database: PgDatabase, port: int) -> subprocess.Popen[str]:
    config = tmp_path / "node-process.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "ingest": {
                    "port": port,
                    "state_dir": str(tmp_path / "node-process"),
                    "admin_key": ADMIN_KEY,
                    "uploads": {"tokens": [TOKEN]},
                    "archive": {"directory": str(tmp_path / "shared")},
                    "database": database.section(),
                },
                "logging": {"format": "json"},
            }
        )
    )
    return subprocess.Popen(
        [sys.executable, "-m", "ingest", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_listening(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the node did not start listening")


async def test_a_node_killed_mid_upload_loses_nothing_and_its_leftovers_are_cleaned_by_another(
    aiohttp_client: Any, tmp_path: Path, pg_database: PgDatabase
) -> None:
    port = free_port()
    proc = node_process(tmp_path, pg_database, port)
    try:
        await asyncio.to_thread(wait_listening, port, proc)
        archive = records_archive("c-killed")
        # Headers and half the body, then the node dies (SIGKILL: no cleanup, no reply).
        boundary = "b0undary"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="batch.tar.gz"\r\n'
            f"Content-Type: application/vnd.redhat.lightspeed.periodic+tgz\r\n\r\n"
        ).encode() + archive
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                f"POST /api/ingress/v1/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"x-rh-insights-request-id: killed-batch\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body) + 100}\r\n\r\n"
            ).encode()
            + body[: len(body) // 2]
        )
        await writer.drain()
        incoming = tmp_path / "shared" / "incoming"

        async def is_receiving() -> bool:
            return any(incoming.iterdir())

        await until(is_receiving, "the node receiving into its temporary file")
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 30)
        assert await reader.read() == b""  # no reply: the sender will send the batch again
        writer.close()
        left = list(incoming.iterdir())
        assert len(left) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    # The sender's retry reaches the other node: stored once.
    other = await start_node(aiohttp_client, tmp_path, "node-b", pg_database)
    reply = await upload(other, archive, "killed-batch")
    assert reply.status == 202
    assert (await reply.json())["upload"]["duplicate_request"] is False
    assert pg_database.query("SELECT request_id, new_records FROM uploads") == [("killed-batch", 2)]
    # The dead node's half-received file is another node's to remove, once it is old enough to be
    # nobody's upload in progress.
    an_hour_ago = time.time() - 3600
    os.utime(left[0], (an_hour_ago, an_hour_ago))
    again = await start_node(aiohttp_client, tmp_path, "node-c", pg_database)
    assert list(incoming.iterdir()) == []
    assert shared_archives(tmp_path) == ["killed-batch.tar.gz"]
    await again.close()


async def test_a_lost_database_is_503_with_retry_after_and_the_collector_delivers_once_it_is_back(
    aiohttp_server: Any, tmp_path: Path, pg_database: PgDatabase
) -> None:
    database = pg_database.section(connect_timeout_seconds=2, health_check_interval_seconds=0.2)
    ingest = ingest_config(tmp_path / "ingest", database=database)
    server = await aiohttp_server(create_ingest_app(ingest), host="127.0.0.1")
    client = TestClient(server)
    await client.start_server()
    data = tmp_path / "data"
    config = config_from_mapping(
        {
            "service": {"state_dir": str(tmp_path / "state")},
            "user_data_collection": {
                "feedback_enabled": True,
                "feedback_storage": str(data / "feedback"),
                "transcripts_enabled": True,
                "transcripts_storage": str(data / "transcripts"),
                "data_collector": {
                    "enabled": True,
                    "ingress_server_url": f"http://127.0.0.1:{server.port}/api/ingress/v1/upload",
                    "ingress_server_auth_token": TOKEN,
                    "ingress_content_service_name": "lightspeed",
                    "collection_interval": 1,
                    "connection_timeout_seconds": 5,
                },
            },
            "collector": {
                "max_batch_files": 5,
                "retry": {
                    "initial_seconds": 0.05,
                    "max_seconds": 0.2,
                    "jitter_seconds": 0,
                    "max_attempts": 3,
                    "max_retry_after_seconds": 0.2,
                },
            },
        }
    )
    collector = Collector(config)
    running = asyncio.create_task(collector.async_run())
    written: set[str] = set()

    def write(count: int) -> None:
        for _ in range(count):
            n = len(written)
            write_record(data / "feedback", f"fb-{n:04d}.json", {"user_id": "u", "sentiment": 1, "n": n})
            written.add(f"feedback/fb-{n:04d}.json")

    async def all_indexed() -> bool:
        rows = await asyncio.to_thread(pg_database.query, "SELECT member FROM records")
        return {row[0] for row in rows} == written

    async def refused() -> bool:
        return "503" in (collector.totals.last_error or "")

    try:
        write(8)
        await until(all_indexed, "the first 8 records indexed")
        pg_database.server.stop("immediate")  # the database crashes
        write(12)
        await until(refused, "an upload answered 503")
        # Within a second, or more on a loaded machine; asked directly, the database takes 2 x 2 s to fail.
        bound = max(1.0, 2 * await loop_pause_bound(client))
        readiness: list[tuple[float, Any]] = []

        async def unready() -> bool:
            started = time.perf_counter()
            resp = await client.get("/readiness")
            readiness.append((time.perf_counter() - started, resp))
            return resp.status == 503

        # Item 23.3: from the background probe, each answer at once (asked directly: 2 x the connect timeout).
        await until(unready, "readiness 503 with the database stopped")
        assert max(seconds for seconds, _ in readiness) < bound
        ready = readiness[-1][1]
        assert ready.headers["Retry-After"] == "5"
        assert "database unreachable" in (await ready.json())["reason"]
        pg_database.server.start()
        await until(all_indexed, "all 20 records indexed after the database came back")

        async def ready_again() -> bool:
            return (await client.get("/readiness")).status == 200

        await until(ready_again, "readiness 200 with the database back")
    finally:
        collector.stop()
        await running
        await client.close()
    totals = pg_database.query("SELECT COUNT(*), SUM(new_records), SUM(duplicate_records) FROM uploads")
    assert totals[0][1:] == (20, 0)  # every record indexed once, none twice
    remaining = [p for p in (data / "feedback").rglob("*.json")]
    assert remaining == []


async def test_an_unreachable_database_at_start_names_it(tmp_path: Path, pg_database: PgDatabase) -> None:
    url = pg_database.url.replace(str(pg_database.server.port), str(free_port()))
    config = ingest_config(tmp_path / "ingest", database={"url": url, "connect_timeout_seconds": 1})
    runner = web.AppRunner(create_ingest_app(config))
    with pytest.raises(Exception, match=r"ingest database postgresql://.* is not usable: database unreachable"):
        await runner.setup()
    await runner.cleanup()


async def test_a_wrong_password_is_refused_at_start_without_printing_it(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password-1234\n")
    config = ingest_config(tmp_path / "ingest", database=pg_database.section(password_file=str(wrong)))
    runner = web.AppRunner(create_ingest_app(config))
    with pytest.raises(Exception, match="password authentication failed") as failure:
        await runner.setup()
    await runner.cleanup()
    assert "not-the-password-1234" not in str(failure.value)


async def test_a_database_written_by_a_newer_release_is_refused(tmp_path: Path, pg_database: PgDatabase) -> None:
    config = ingest_config(tmp_path / "ingest", database=pg_database.section())
    runner = web.AppRunner(create_ingest_app(config))
    await runner.setup()  # creates the tables at the current version
    await runner.cleanup()
    pg_database.query("UPDATE schema_version SET version = version + 1 WHERE component = 'ingest' RETURNING 1")
    runner = web.AppRunner(create_ingest_app(config))
    newest = len(MIGRATIONS)
    with pytest.raises(
        Exception, match=f"the database has ingest schema version {newest + 1}; this release knows {newest}"
    ):
        await runner.setup()
    await runner.cleanup()


async def test_a_resend_counted_by_another_node_at_the_same_moment_is_a_duplicate(pg_database: PgDatabase) -> None:
    """Node A's transaction has taken the event's key but not committed; node B's insert waits for it
    and then finds the key taken: B answers `duplicate` and counts nothing."""
    storage = PostgresStorage(DatabaseConfig(url=pg_database.url), PASSWORD)
    resent = ModelRegistrationEvent.model_validate(event(ago(minutes=1), "raced-model"))
    with pg_database.server.connect(pg_database.name) as other_node:
        other_node.autocommit = False
        other_node.execute(
            "INSERT INTO seen_events VALUES (%s, %s, %s)",
            (event_key(resent), contributor_hash(resent.model_name, resent.client_id), resent.timestamp[:10]),
        )
        counting = asyncio.create_task(asyncio.to_thread(storage.add_events, [resent], DailyLimits(100, 100)))

        async def waiting_on_the_other_node() -> bool:
            rows = await asyncio.to_thread(
                pg_database.query,
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = %s",
                pg_database.name,
            )
            return bool(rows[0][0])

        await until(waiting_on_the_other_node, "node B waiting on node A's uncommitted key")
        other_node.commit()
    assert await counting == ["duplicate"]
    assert pg_database.query("SELECT COUNT(*) FROM contributions") == [(0,)]
    storage.close()


def test_a_node_that_cannot_reach_the_database_at_start_exits_75_for_systemd_to_retry(
    tmp_path: Path, pg_database: PgDatabase
) -> None:
    url = pg_database.url.replace(str(pg_database.server.port), str(free_port()))
    config = tmp_path / "ingest.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "ingest": {
                    "state_dir": str(tmp_path / "state"),
                    "database": {"url": url, "connect_timeout_seconds": 1},
                },
                "logging": {"format": "json"},
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "ingest", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 75, done.stdout + done.stderr
    assert '"temporary": true' in done.stdout
    assert "database unreachable" in done.stdout


async def test_two_nodes_applying_one_erasure_at_once_agree(
    nodes: tuple[Client, Client], tmp_path: Path, pg_database: PgDatabase
) -> None:
    """An erasure record arrives at one node while both run their erasure pass: each rewrites what it finds,
    and the archives and the index end the same as if one had done it all."""
    first, second = nodes
    erased, kept = "e" * 64, "f" * 64
    for n in range(20):
        records = [(f"feedback/{user}-{n}.json", user) for user in (erased, kept)]
        entries = []
        for name, user in records:
            data = f'{{"user_id": "{user}", "timestamp": "2026-11-30T10:00:00Z", "n": {n}}}'.encode()
            entries.append((member(name, data), data))
        assert (await upload(first if n % 2 else second, tar_gz(entries), f"batch-{n}")).status == 202
    moment = datetime.now(UTC)
    storage = first.app[INGEST].db.storage
    await first.app[INGEST].db.run(storage.request_erasure, erased, moment, "admin", moment)
    await asyncio.gather(apply_pending(first.app[INGEST]), apply_pending(second.app[INGEST]))
    root = tmp_path / "shared" / "archives"
    assert len(list(root.rglob("*.tar.gz"))) == 20
    for path in root.rglob("*.tar.gz"):
        data = gzip.decompress(path.read_bytes())
        assert erased.encode() not in data
        assert kept.encode() in data
    assert pg_database.query("SELECT COUNT(*), SUM(records) FROM uploads") == [(20, 20)]
    assert pg_database.query("SELECT COUNT(*) FROM records") == [(20,)]
    assert pg_database.query("SELECT COUNT(*) FROM upload_users WHERE user_hash = %s", erased) == [(0,)]
    assert pg_database.query("SELECT COUNT(*) FROM erasures WHERE done_at IS NOT NULL AND user_hash IS NULL") == [(1,)]
    sizes = dict(pg_database.query("SELECT archive, bytes FROM uploads"))
    assert all(sizes[p.relative_to(root).as_posix()] == p.stat().st_size for p in root.rglob("*.tar.gz"))
