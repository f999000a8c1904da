"""Prometheus metrics, one registry per application (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from lightspeed.records import RecordKind


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

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Metrics(HttpMetrics):
    def __init__(self) -> None:
        super().__init__("lightspeed")
        self.records_written = Counter(
            "lightspeed_records_written", "Records written to disk by kind", ["kind"], registry=self.registry
        )
        self.records_failed = Counter(
            "lightspeed_records_failed",
            "Records that could not be written by kind",
            ["kind"],
            registry=self.registry,
        )
        self.telemetry_queued = Counter(
            "lightspeed_telemetry_events_queued", "Telemetry events queued", registry=self.registry
        )
        self.telemetry_dropped = Counter(
            "lightspeed_telemetry_events_dropped",
            "Telemetry events dropped without being sent, by reason "
            "(queue_full, expired, before_consent, rejected_batch, unreadable)",
            ["reason"],
            registry=self.registry,
        )
        self.telemetry_sent = Counter(
            "lightspeed_telemetry_events_sent",
            "Telemetry events sent, by the registry's verdict",
            ["verdict"],
            registry=self.registry,
        )
        self.model_registrations = Counter(
            "lightspeed_embedding_model_registrations",
            "Embedding model registrations by outcome",
            ["status"],
            registry=self.registry,
        )
        for kind in ("feedback", "transcript"):
            self.records_written.labels(kind)
            self.records_failed.labels(kind)

    def record_result(self, kind: RecordKind, ok: bool) -> None:
        (self.records_written if ok else self.records_failed).labels(kind).inc()

    def telemetry_drop(self, reason: str, count: int) -> None:
        self.telemetry_dropped.labels(reason).inc(count)

    def telemetry_result(self, accepted: int, rejected: int) -> None:
        self.telemetry_sent.labels("accepted").inc(accepted)
        self.telemetry_sent.labels("rejected").inc(rejected)
