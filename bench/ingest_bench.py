"""lightspeed-ingest: telemetry events per second and upload MiB per minute, beside a no-op handler.

Telemetry: 30,000 events from 500 installations and 40 models, POSTed in
batches of 100 by 4 concurrent senders, to the real ingest (SQLite on an ext4
data volume, every batch committed durably) and to a no-op aiohttp handler
that reads the body and answers a fixed reply. Target: >= 2,000 events/s.

Uploads: 10 archives of about 13 MiB (unique JSON records, as the collector
packs them), sent one after another as the collector does, to the ingest and
to the no-op handler. Target: >= 100 MiB/min, with the ingest's memory flat:
its peak RSS may not grow by more than 64 MB over the run (the archives are
streamed to disk, never held whole).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import yaml

from common import REPO, data_volume, free_port, rss_mb, stop, wait_ready

sys.path.insert(0, str(REPO))
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


async def post_telemetry(url: str, bodies: list[bytes]) -> float:
    queue = list(reversed(bodies))

    async def sender(session: aiohttp.ClientSession) -> None:
        while queue:
            body = queue.pop()
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                reply = await resp.json()
                assert resp.status == 200, reply
                assert reply["accepted"] == BATCH, reply

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(SENDERS)))
        return time.perf_counter() - started


async def post_uploads(url: str, archives: list[bytes], pid: int | None) -> tuple[float, list[float]]:
    peaks = []
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        for i, data in enumerate(archives):
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
        return time.perf_counter() - started, peaks


def start_ingest(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    config = {
        "ingest": {
            "port": port,
            "state_dir": str(workdir / "ingest"),
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
    path = workdir / "ingest.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (workdir / "ingest.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "serve", "--config", str(path)], stdout=log, stderr=subprocess.STDOUT
    )
    wait_ready(port, proc, "/liveness")
    return proc


def main() -> bool:
    print(f"== ingest: {EVENTS} telemetry events in batches of {BATCH}; {ARCHIVES} archive uploads")
    bodies = events()
    started = time.perf_counter()
    archives = [archive(i) for i in range(ARCHIVES)]
    mib = sum(len(a) for a in archives) / 2**20
    print(f"  (made {ARCHIVES} archives, {mib:.1f} MiB, in {time.perf_counter() - started:.1f} s)")
    noop_port, ingest_port = free_port(), free_port()
    noop = subprocess.Popen([sys.executable, str(REPO / "bench" / "noop_server.py"), str(noop_port)])
    with data_volume("4G") as volume, tempfile.TemporaryDirectory(dir=volume) as tmp:
        ingest = start_ingest(Path(tmp), ingest_port)
        try:
            wait_ready(noop_port, noop, "/liveness")
            noop_events = asyncio.run(post_telemetry(f"http://127.0.0.1:{noop_port}/api/v1/telemetry", bodies))
            ingest_events = asyncio.run(post_telemetry(f"http://127.0.0.1:{ingest_port}/api/v1/telemetry", bodies))
            noop_upload, _ = asyncio.run(
                post_uploads(f"http://127.0.0.1:{noop_port}/api/ingress/v1/upload", archives, None)
            )
            before = rss_mb(ingest.pid)[1]
            ingest_upload, peaks = asyncio.run(
                post_uploads(f"http://127.0.0.1:{ingest_port}/api/ingress/v1/upload", archives, ingest.pid)
            )
        finally:
            stop(ingest)
            stop(noop)
        stored = sum(p.stat().st_size for p in (Path(tmp) / "ingest" / "archives").rglob("*.tar.gz")) / 2**20
    event_rate, noop_rate = EVENTS / ingest_events, EVENTS / noop_events
    upload_rate, noop_upload_rate = mib / ingest_upload * 60, mib / noop_upload * 60
    growth = max(peaks) - before
    print(f"  baseline no-op handler, telemetry     : {noop_rate:9,.0f} events/s")
    print(f"  lightspeed-ingest (validate + SQLite)  : {event_rate:9,.0f} events/s   (target >= 2,000/s)")
    print(f"  baseline no-op handler, uploads       : {noop_upload_rate:9,.0f} MiB/min")
    print(f"  lightspeed-ingest (stream, check, index): {upload_rate:8,.0f} MiB/min   (target >= 100 MiB/min)")
    print(
        f"  ingest peak RSS {before:.0f} MB before the uploads, {max(peaks):.0f} MB after (+{growth:.0f} MB, limit +64)"
    )
    print(f"  per upload peak RSS: {', '.join(f'{p:.0f}' for p in peaks)} MB; stored {stored:.1f} of {mib:.1f} MiB")
    ok = event_rate >= 2000 and upload_rate >= 100 and growth <= 64 and abs(stored - mib) < 0.01
    print(f"  {'PASS' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    (REPO / "bench" / "out").mkdir(exist_ok=True)
    main()
