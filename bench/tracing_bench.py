"""What tracing costs a query: two servers side by side, one with OpenTelemetry on (spans batched to an
OTLP/HTTP sink on this machine), one without; a client asks `POST /v1/query` of each in turn, one at a
time, so both see the same machine noise. Figures: p50 and p99 of each and the difference of the p50s
(target: tracing adds under 1 ms, against answers that take tens), and how many spans reached the sink.
"""

from __future__ import annotations

import http.client
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from common import REPO, free_port, percentile, start_server, stop

QUERIES = 300
WARM_UP = 30
TARGET_MS = 1.0
QUESTIONS = ["How do I start the server?", "How do I enable feedback?", "What does the collector do?"]


class Sink:
    """An OTLP/HTTP receiver that takes every export and keeps only how many there were and their size."""

    def __init__(self) -> None:
        self.exports = 0
        self.bytes = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner.bytes += len(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                owner.exports += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _latencies(ports: dict[str, int]) -> dict[str, list[float]]:
    connections = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=60) for name, port in ports.items()}
    found: dict[str, list[float]] = {name: [] for name in ports}
    for n in range(QUERIES + WARM_UP):
        body = json.dumps({"query": QUESTIONS[n % len(QUESTIONS)]})
        for name in ports:
            started = time.perf_counter()
            connections[name].request("POST", "/v1/query", body, {"Content-Type": "application/json"})
            response = connections[name].getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{name}: {response.status}")
            if n >= WARM_UP:
                found[name].append((time.perf_counter() - started) * 1000)
    return found


def main() -> bool:
    print(f"== tracing: POST /v1/query, {QUERIES} each, to a server with OpenTelemetry on and one without")
    sink = Sink()
    traced_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ports = {"off": free_port(), "on": free_port()}
        servers = [start_server(workdir / "off", REPO / "docs", ports["off"])]
        try:
            servers.append(start_server(workdir / "on", REPO / "docs", ports["on"], env=traced_env))
            found = _latencies(ports)
            time.sleep(1)  # the last batch of spans (sent every 200 ms)
        finally:
            for server in servers:
                stop(server)
            sink.server.shutdown()
    p50 = {name: percentile(values, 0.5) for name, values in found.items()}
    for name, values in found.items():
        print(f"  tracing {name:<4} p50 {p50[name]:.2f} ms  p99 {percentile(values, 0.99):.2f} ms")
    extra = p50["on"] - p50["off"]
    ok = extra < TARGET_MS and sink.exports > 0
    print(f"  tracing adds {extra:.3f} ms at p50 (target < {TARGET_MS} ms; baseline: the same server untraced)")
    print(f"  the sink received {sink.exports} exports, {sink.bytes / 1024:.0f} KiB of spans")
    print(f"  tracing: {'PASS' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    main()
