"""The telemetry queue and sender: 10,000 events appended, then sent to a local registry.

Targets (issue 4): appending runs at more than 5,000 events/s (each event built
and validated from a model's facts, as a registration does, and on disk at the
end); sending all 10,000 to a local registry (the development registry, which
validates every event) takes under 5 s. Baselines from the same run: writing the
same JSON lines to a file with one fsync, and POSTing the same 100 batches
straight to the registry with aiohttp.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp

from common import REPO, free_port, stop, wait_ready
from lightspeed.store.settings import RuntimeSettings
from lightspeed.store.sqlite import DATABASE_FILE, SQLiteStateStore
from lightspeed.store.telemetry_queue import QueueBounds, TelemetryQueue
from lightspeed.telemetry.registry_client import RegistryClient
from lightspeed.telemetry.sender import TelemetrySender
from lightspeed.telemetry.service import ModelFacts, TelemetryService
from lightspeed_common.config import TelemetryConfig
from lightspeed_common.telemetry_schema import CONSENT_VERSION

EVENTS = 10_000
BATCH = 100


def facts(i: int) -> ModelFacts:
    return ModelFacts(
        model_name=f"org/model-{i % 50}",
        model_source="sentence-transformers",
        model_version="1.0.0",
        embedding_dimension=384,
        modalities=["text"],
        distance_metric="cosine",
        normalization="l2",
        load_success=True,
        inference_success=True,
        device_type="cpu",
        local_path_hash=None,
    )


@dataclass
class Telemetry:
    config: TelemetryConfig
    settings: RuntimeSettings
    service: TelemetryService


async def open_telemetry(state: Path, registry_url: str) -> Telemetry:
    """The server's telemetry parts, enabled, as after an operator's consent."""
    config = TelemetryConfig.model_validate(
        {"registry_url": registry_url, "batch_max_events": BATCH, "queue_max_events": EVENTS}
    )
    await asyncio.to_thread(state.mkdir, parents=True, exist_ok=True)
    store = SQLiteStateStore(state / DATABASE_FILE)
    settings = await RuntimeSettings.load(store, state, feedback_default=False)
    bounds = QueueBounds(EVENTS, config.queue_max_bytes, timedelta(days=config.event_max_age_days))
    queue = await TelemetryQueue.load(store, state, bounds, lambda reason, count: None)
    service = TelemetryService(config, settings, queue, environ={})
    await service.enable(CONSENT_VERSION)
    return Telemetry(config, settings, service)


def raw_append(path: Path, lines: list[str]) -> float:
    started = time.perf_counter()
    with path.open("a", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
            handle.flush()
        os.fsync(handle.fileno())
    return time.perf_counter() - started


async def raw_send(url: str, bodies: list[bytes]) -> float:
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        for body in bodies:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
        return time.perf_counter() - started


async def measure(workdir: Path, url: str) -> dict[str, float]:
    telemetry = await open_telemetry(workdir / "state", url)
    service = telemetry.service
    started = time.perf_counter()
    queued = sum(service.record_model(facts(i)) for i in range(EVENTS))
    await service.queue.flush()
    append_seconds = time.perf_counter() - started
    assert queued == EVENTS, queued
    lines = [q.line for q in service.queue.events()]
    raw_append_seconds = raw_append(workdir / "raw.jsonl", lines)
    bodies = [("[" + ",".join(lines[i : i + BATCH]) + "]").encode() for i in range(0, EVENTS, BATCH)]
    # The baseline's events go to the same registry; it stores them beside ours.
    raw_send_seconds = await raw_send(url, bodies)
    async with aiohttp.ClientSession() as session:
        client = RegistryClient(session, telemetry.config, token=None)
        sender = TelemetrySender(telemetry.config, service, telemetry.settings, client)
        started = time.perf_counter()
        outcome = await sender.send_now()
        send_seconds = time.perf_counter() - started
    assert outcome.accepted == EVENTS, outcome
    assert outcome.remaining == 0, outcome
    return {
        "append": append_seconds,
        "raw_append": raw_append_seconds,
        "send": send_seconds,
        "raw_send": raw_send_seconds,
    }


def main() -> bool:
    print(f"== telemetry: append {EVENTS} events, then send them in batches of {BATCH} to the dev registry")
    with tempfile.TemporaryDirectory(dir=REPO / "bench" / "out") as tmp:
        workdir = Path(tmp)
        port = free_port()
        registry = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "sink_ingress.py"),
                "--port",
                str(port),
                "--store",
                str(workdir / "registry"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(port, registry, "/liveness")
            figures = asyncio.run(measure(workdir, f"http://127.0.0.1:{port}/api/v1/telemetry"))
        finally:
            stop(registry)
        received = len((workdir / "registry" / "telemetry.jsonl").read_text().splitlines())
    append_rate = EVENTS / figures["append"]
    print(f"  baseline raw JSON-lines append + one fsync : {EVENTS / figures['raw_append']:9,.0f} events/s")
    print(f"  lightspeed record_model + queue + store     : {append_rate:9,.0f} events/s   (target > 5,000/s)")
    print(f"  baseline raw POST of the same 100 batches   : {figures['raw_send']:6.2f} s")
    print(f"  lightspeed sender, sent rows deleted a batch: {figures['send']:6.2f} s   (target < 5 s)")
    print(f"  registry received {received} events (2 x {EVENTS}: baseline and sender)")
    ok = append_rate > 5000 and figures["send"] < 5 and received == 2 * EVENTS
    print(f"  {'PASS' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    (REPO / "bench" / "out").mkdir(exist_ok=True)
    main()
