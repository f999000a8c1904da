"""The server's Prometheus metrics: HTTP (shared with the ingest), records, telemetry, models."""

from __future__ import annotations

from prometheus_client import Counter

from lightspeed_common.http.metrics import HttpMetrics
from lightspeed_common.records import RECORD_KINDS, KindName


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
        for kind in RECORD_KINDS:
            self.records_written.labels(kind.name)
            self.records_failed.labels(kind.name)

    def record_result(self, kind: KindName, ok: bool) -> None:
        (self.records_written if ok else self.records_failed).labels(kind).inc()

    def telemetry_drop(self, reason: str, count: int) -> None:
        self.telemetry_dropped.labels(reason).inc(count)

    def telemetry_result(self, accepted: int, rejected: int) -> None:
        self.telemetry_sent.labels("accepted").inc(accepted)
        self.telemetry_sent.labels("rejected").inc(rejected)
