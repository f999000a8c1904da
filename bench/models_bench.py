"""Registering an embedding model through the API versus loading it with plain sentence-transformers.

Targets (issue 4): registering the packaged MiniLM through `POST /v1/embedding-models`
costs at most 1.3x loading it and encoding one sentence with sentence-transformers,
measured in the same run; while registrations run, `/liveness` p99 stays under 20 ms.
"""

from __future__ import annotations

import http.client
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from common import REPO, free_port, percentile, start_server, stop

ROUNDS = 15
BODY = json.dumps({"model_name": "sentence-transformers/all-MiniLM-L6-v2", "model_source": "sentence-transformers"})


def plain_load_and_encode() -> float:
    """The baseline: what registering fundamentally costs, in this process, in ms."""
    from sentence_transformers import SentenceTransformer

    from lightspeed.models.embedding import default_model_path

    started = time.perf_counter()
    model = SentenceTransformer(str(default_model_path()), device="cpu", local_files_only=True)
    model.encode(["The quick brown fox jumps over the lazy dog."], show_progress_bar=False)
    return (time.perf_counter() - started) * 1000


def register(port: int) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    connection.request("POST", "/v1/embedding-models", body=BODY, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    assert response.status == 201, data
    return (time.perf_counter() - started) * 1000


class LivenessProbe(threading.Thread):
    """GET /liveness every 5 ms on one connection, recording each latency in ms."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.latencies: list[float] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stopping.is_set():
            started = time.perf_counter()
            connection.request("GET", "/liveness")
            connection.getresponse().read()
            self.latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.005)


def probe_while(port: int, work: object) -> list[float]:
    probe = LivenessProbe(port)
    probe.start()
    if callable(work):
        work()
    probe.stopping.set()
    probe.join()
    return probe.latencies


def main() -> bool:
    print(f"== models: register the packaged MiniLM through the API vs plain sentence-transformers, {ROUNDS} rounds")
    plain_load_and_encode()  # warm: imports, page cache
    plain = [plain_load_and_encode() for _ in range(ROUNDS)]
    with tempfile.TemporaryDirectory(dir=REPO / "bench" / "out") as tmp:
        port = free_port()
        server = start_server(Path(tmp), REPO / "docs", port)
        try:
            register(port)  # warm, like the baseline
            idle = probe_while(port, lambda: time.sleep(2))
            served: list[float] = []
            during = probe_while(port, lambda: served.extend(register(port) for _ in range(ROUNDS)))
        finally:
            stop(server)
    ratio = statistics.median(served) / statistics.median(plain)
    idle_p99, during_p99 = percentile(idle, 0.99), percentile(during, 0.99)
    print(f"  baseline plain load + encode one sentence (in-process): median {statistics.median(plain):7.1f} ms")
    print(
        f"  lightspeed POST /v1/embedding-models                  : median {statistics.median(served):7.1f} ms"
        f"   ratio {ratio:.2f}x (target <= 1.3x)"
    )
    print(f"  baseline /liveness p99, server idle                   : {idle_p99:6.2f} ms ({len(idle)} probes)")
    print(
        f"  /liveness p99 while registrations run                 : {during_p99:6.2f} ms ({len(during)} probes)"
        "   (target < 20 ms)"
    )
    ok = ratio <= 1.3 and during_p99 < 20
    print(f"  {'PASS' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    (REPO / "bench" / "out").mkdir(exist_ok=True)
    main()
