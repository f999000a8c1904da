"""Prometheus metrics, one registry per application (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from lightspeed.records import RecordKind


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "lightspeed_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lightspeed_http_request_duration_seconds",
            "HTTP request latency by route",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.records_written = Counter(
            "lightspeed_records_written", "Records written to disk by kind", ["kind"], registry=self.registry
        )
        self.records_failed = Counter(
            "lightspeed_records_failed",
            "Records that could not be written by kind",
            ["kind"],
            registry=self.registry,
        )
        for kind in ("feedback", "transcript"):
            self.records_written.labels(kind)
            self.records_failed.labels(kind)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def record_result(self, kind: RecordKind, ok: bool) -> None:
        (self.records_written if ok else self.records_failed).labels(kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
