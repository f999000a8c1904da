"""lightspeed-ingest: telemetry events per second and upload MiB per minute, beside a no-op handler.

Telemetry: 30,000 events from 500 installations and 40 models, POSTed in
batches of 100 by 4 concurrent senders, to the real ingest and to a no-op
aiohttp handler that reads the body and answers a fixed reply.

Uploads: 10 archives of about 13 MiB (unique JSON records, as the collector
packs them), sent one after another as the collector does, to the ingest and
to the no-op handler.

The ingest runs three ways, everything on an ext4 data volume, every commit
durable: SQLite, one node; PostgreSQL (a real server this bench starts, fsync
on), one node; PostgreSQL, two nodes sharing the database and the archive
directory, the senders split between them (uploads: two collectors, one per
node). Targets, each way: >= 2,000 events/s and >= 100 MiB/min; one node's
peak RSS may not grow by more than 64 MB over the uploads (the archives are
streamed to disk, never held whole).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from common import REPO, data_volume, free_port, rss_mb, stop, wait_ready

sys.path.insert(0, str(REPO))
from tests.postgres import PostgresServer  # the tests' PostgreSQL server, started the same way
from tests.telemetry_support import event  # the tests' valid event, so both stay in step with the schema

EVENTS = 30_000
BATCH = 100
SENDERS = 4
ARCHIVES = 10
RECORDS_PER_ARCHIVE = 12_000
TOKEN = "bench-token"  # noqa: S105 - a benchmark-only upload token


def events() -> list[bytes]:
    clients = [str(uuid.uuid4()) for _ in range(500)]
    base = datetime.now(UTC) - timedelta(hours=1)
    # Unique per (client, model, second): the same pair comes back 1,000 events (1 s) later.
    out = [
        event(base + timedelta(milliseconds=i), f"org/model-{i % 40}", clients[i % len(clients)]) for i in range(EVENTS)
    ]
    return [json.dumps(out[i : i + BATCH]).encode() for i in range(0, EVENTS, BATCH)]


def archive(index: int) -> bytes:
    """Unique transcript records of about 3 KiB, mostly random hex (compresses about 2.5x)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for n in range(RECORDS_PER_ARCHIVE):
            conversation = f"{index:04d}-{n:06d}"
            body = json.dumps(
                {
                    "metadata": {"conversation_id": conversation, "timestamp": "2026-11-22T10:00:00Z"},
                    "redacted_query": "How do I configure the collector to ship records? " * 6,
                    "llm_response": os.urandom(1000).hex() + " answer text " * 40,
                    "rag_chunks": [],
                }
            ).encode()
            info = tarfile.TarInfo(f"transcripts/user/{conversation}/{n}.json")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return gzip.compress(raw.getvalue(), compresslevel=6)


async def post_telemetry(urls: list[str], bodies: list[bytes]) -> float:
    """Four senders, spread over the nodes' URLs."""
    queue = list(reversed(bodies))

    async def sender(session: aiohttp.ClientSession, url: str) -> None:
        while queue:
            body = queue.pop()
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                reply = await resp.json()
                assert resp.status == 200, reply
                assert reply["accepted"] == BATCH, reply

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(sender(session, urls[n % len(urls)]) for n in range(SENDERS)))
        return time.perf_counter() - started


async def post_uploads(urls: list[str], archives: list[bytes], pid: int | None) -> tuple[float, list[float]]:
    """One collector per node, each sending its share of the archives one after another."""
    peaks = []

    async def collector(session: aiohttp.ClientSession, url: str, mine: list[bytes]) -> None:
        for i, data in enumerate(mine):
            form = aiohttp.FormData()
            form.add_field(
                "file", data, filename=f"{i}.tar.gz", content_type="application/vnd.redhat.lightspeed.periodic+tar"
            )
            headers = {"Authorization": f"Bearer {TOKEN}", "x-rh-insights-request-id": f"bench-{uuid.uuid4().hex}"}
            async with session.post(url, data=form, headers=headers) as resp:
                reply = await resp.json()
                assert resp.status == 202, reply
                assert reply.get("upload", {"records": RECORDS_PER_ARCHIVE})["records"] == RECORDS_PER_ARCHIVE
            if pid is not None:
                peaks.append(rss_mb(pid)[1])

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        shares = [archives[n :: len(urls)] for n in range(len(urls))]
        await asyncio.gather(*(collector(session, url, share) for url, share in zip(urls, shares, strict=True)))
        return time.perf_counter() - started, peaks


def start_ingest(
    workdir: Path, name: str, port: int, database: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
) -> subprocess.Popen[bytes]:
    """A real ingest with its state in `workdir/name` (`extra`: more keys of its section)."""
    config = {
        "ingest": {
            "port": port,
            "state_dir": str(workdir / name),
            "archive": {"directory": str(workdir / "archives")},
            "database": database or {},
            "uploads": {"tokens": [TOKEN]},
            "telemetry": {
                "max_events_per_model_per_day": 1_000_000,
                "rate_limit": {
                    "per_address_burst_requests": 100_000,
                    "per_address_requests_per_minute": 1_000_000,
                    "per_client_burst_events": 100_000,
                    "per_client_events_per_hour": 1_000_000,
                    "per_address_new_clients_burst": 100_000,
                    "per_address_new_clients_per_day": 1_000_000,
                },
            },
        },
        "logging": {"format": "json", "level": "warning"},
    }
    config["ingest"].update(extra or {})
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "serve", "--config", str(path)], stdout=log, stderr=subprocess.STDOUT
    )
    wait_ready(port, proc, "/liveness")
    return proc


@dataclass
class Run:
    name: str
    event_rate: float
    upload_rate: float
    growth: float | None
    stored: float

    def report(self, mib: float) -> bool:
        growth = "" if self.growth is None else f"; peak RSS +{self.growth:.0f} MB (limit +64)"
        ok = self.event_rate >= 2000 and self.upload_rate >= 100 and abs(self.stored - mib) < 0.01
        ok = ok and (self.growth is None or self.growth <= 64)
        print(
            f"  lightspeed-ingest, {self.name:<22}: {self.event_rate:7,.0f} events/s  {self.upload_rate:6,.0f} MiB/min"
            f"{growth}; stored {self.stored:.1f} of {mib:.1f} MiB  {'PASS' if ok else 'FAIL'}"
        )
        return ok


def measure(workdir: Path, name: str, bodies: list[bytes], archives: list[bytes], *, nodes: int, database: Any) -> Run:
    mib = sum(len(a) for a in archives) / 2**20
    ports = [free_port() for _ in range(nodes)]
    slug = name.replace(", ", "-").replace(" ", "")
    procs = [start_ingest(workdir, f"{slug}-{n}", port, database) for n, port in enumerate(ports)]
    try:
        events_seconds = asyncio.run(post_telemetry([f"http://127.0.0.1:{p}/api/v1/telemetry" for p in ports], bodies))
        watched = procs[0].pid if nodes == 1 else None
        before = rss_mb(procs[0].pid)[1]
        upload_seconds, peaks = asyncio.run(
            post_uploads([f"http://127.0.0.1:{p}/api/ingress/v1/upload" for p in ports], archives, watched)
        )
    finally:
        for proc in procs:
            stop(proc)
    stored = sum(p.stat().st_size for p in (workdir / "archives" / "archives").rglob("*.tar.gz")) / 2**20
    shutil.rmtree(workdir / "archives")
    growth = max(peaks) - before if peaks else None
    return Run(name, EVENTS / events_seconds, mib / upload_seconds * 60, growth, stored)


def main() -> bool:
    print(f"== ingest: {EVENTS} telemetry events in batches of {BATCH}; {ARCHIVES} archive uploads")
    bodies = events()
    started = time.perf_counter()
    archives = [archive(i) for i in range(ARCHIVES)]
    mib = sum(len(a) for a in archives) / 2**20
    print(f"  (made {ARCHIVES} archives, {mib:.1f} MiB, in {time.perf_counter() - started:.1f} s)")
    noop_port = free_port()
    noop = subprocess.Popen([sys.executable, str(REPO / "bench" / "noop_server.py"), str(noop_port)])
    runs: list[Run] = []
    with data_volume("6G") as volume, tempfile.TemporaryDirectory(dir=volume) as tmp:
        workdir = Path(tmp)
        try:
            wait_ready(noop_port, noop, "/liveness")
            noop_events = asyncio.run(post_telemetry([f"http://127.0.0.1:{noop_port}/api/v1/telemetry"], bodies))
            noop_upload, _ = asyncio.run(
                post_uploads([f"http://127.0.0.1:{noop_port}/api/ingress/v1/upload"], archives, None)
            )
        finally:
            stop(noop)
        runs.append(measure(workdir, "SQLite, 1 node", bodies, archives, nodes=1, database=None))
        # On the same data volume, in a directory the postgres user can reach (the temporary one is root's).
        pg_parent = volume / "postgres"
        pg_parent.mkdir(mode=0o755, exist_ok=True)
        server = PostgresServer(parent=pg_parent, durable=True)
        try:
            for nodes in (1, 2):
                database = server.create_database()
                section = {"url": server.url(database), "password_file": str(server.password_file)}
                label = f"PostgreSQL, {nodes} node{'s' if nodes > 1 else ''}"
                runs.append(measure(workdir, label, bodies, archives, nodes=nodes, database=section))
        finally:
            server.close()
    noop_rates = f"{EVENTS / noop_events:7,.0f} events/s  {mib / noop_upload * 60:6,.0f} MiB/min"
    print(f"  baseline no-op handler                : {noop_rates}")
    results = [run.report(mib) for run in runs]
    ok = all(results)
    print(f"  {'PASS' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    (REPO / "bench" / "out").mkdir(exist_ok=True)
    main()
