"""Prometheus metrics, one registry per application (no global state).

Under several workers (`PROMETHEUS_MULTIPROC_DIR` set by the supervisor) every
worker writes its values to files there, and `/metrics` answered by any worker
adds them all up (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class HttpMetrics:
    """Request counts and latency under `<prefix>_http_...`; what the shared middleware records."""

    def __init__(self, prefix: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            f"{prefix}_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{prefix}_http_request_duration_seconds",
            "HTTP request latency by route",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

        self.cut_short = Counter(
            f"{prefix}_http_responses_cut_short",
            "Responses closed before their end after their status was sent (a stream, an export), by route, "
            "method and cause: failure (ours) or client_left",
            ["route", "method", "cause"],
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        if os.environ.get(MULTIPROCESS_ENV):
            every_worker = CollectorRegistry()
            multiprocess.MultiProcessCollector(every_worker)  # type: ignore[no-untyped-call]
            return generate_latest(every_worker)
        return generate_latest(self.registry)
