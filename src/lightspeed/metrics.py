"""The server's Prometheus metrics: HTTP (shared with the ingest), records, telemetry, models,
and lightspeed-stack's `ls_*` family, so its dashboards work unchanged.

`ls_rest_api_calls_total` and `ls_response_duration_seconds` label the route
template as `path` (`/v2/conversations/{conversation_id}`), never the raw path:
ids in paths would make every conversation a time series.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from lightspeed_common.http.metrics import HttpMetrics
from lightspeed_common.records import RECORD_KINDS, KindName

LLM = ("provider", "model")
LLM_CALL = ("provider", "model", "endpoint")
SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class StackMetrics:
    """lightspeed-stack's metric names and labels."""

    def __init__(self, registry: Any) -> None:
        self.rest_api_calls = Counter(
            "ls_rest_api_calls", "REST API calls by path and status code", ["path", "status_code"], registry=registry
        )
        self.response_duration = Histogram(
            "ls_response_duration_seconds", "REST API response durations", ["path"], registry=registry, buckets=SECONDS
        )
        self.provider_model_configuration = Gauge(
            "ls_provider_model_configuration",
            "The provider/model pairs this server offers",
            LLM,
            registry=registry,
            multiprocess_mode="max",  # the same in every worker
        )
        self.llm_calls = Counter("ls_llm_calls", "LLM calls by provider and model", LLM, registry=registry)
        self.llm_calls_failures = Counter("ls_llm_calls_failures", "LLM calls that failed", LLM, registry=registry)
        self.llm_validation_errors = Counter(
            "ls_llm_validation_errors",
            "LLM calls a shield refused (no shields: 0)",
            LLM,
            registry=registry,
        )
        self.llm_token_sent = Counter("ls_llm_token_sent", "Tokens sent to the LLM", LLM_CALL, registry=registry)
        self.llm_token_received = Counter(
            "ls_llm_token_received", "Tokens received from the LLM", LLM_CALL, registry=registry
        )
        self.llm_inference_duration = Histogram(
            "ls_llm_inference_duration_seconds", "LLM inference durations", LLM_CALL, registry=registry, buckets=SECONDS
        )
        self.started_in_degraded_mode = Gauge(
            "ls_started_in_degraded_mode",
            "1: started with the provider unready",
            registry=registry,
            multiprocess_mode="max",  # any worker that started degraded
        )


class Metrics(HttpMetrics):
    def __init__(self) -> None:
        super().__init__("lightspeed")
        self.ls = StackMetrics(self.registry)
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
        self.retention_removed = Counter(
            "lightspeed_retention_removed",
            "What retention passes removed (conversations, turns, transcripts, feedback)",
            ["what"],
            registry=self.registry,
        )
        for kind in RECORD_KINDS:
            self.records_written.labels(kind.name)
            self.records_failed.labels(kind.name)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        super().observe_request(route, method, status, seconds)
        self.ls.rest_api_calls.labels(route, str(status)).inc()
        self.ls.response_duration.labels(route).observe(seconds)

    def llm_call(self, provider: str, model: str, endpoint: str, *, seconds: float, sent: int, received: int) -> None:
        """One answer given: its call, duration and token counts (a failed call is `llm_failure`)."""
        self.ls.llm_calls.labels(provider, model).inc()
        self.ls.llm_inference_duration.labels(provider, model, endpoint).observe(seconds)
        self.ls.llm_token_sent.labels(provider, model, endpoint).inc(sent)
        self.ls.llm_token_received.labels(provider, model, endpoint).inc(received)

    def offer_model(self, provider: str, model: str) -> None:
        """A configured provider/model pair: its configuration gauge, and its LLM counters shown at 0."""
        self.ls.provider_model_configuration.labels(provider, model).set(1)
        for counter in (self.ls.llm_calls, self.ls.llm_calls_failures, self.ls.llm_validation_errors):
            counter.labels(provider, model)

    def llm_failure(self, provider: str, model: str) -> None:
        self.ls.llm_calls_failures.labels(provider, model).inc()

    def record_result(self, kind: KindName, ok: bool) -> None:
        (self.records_written if ok else self.records_failed).labels(kind).inc()

    def telemetry_drop(self, reason: str, count: int) -> None:
        self.telemetry_dropped.labels(reason).inc(count)

    def telemetry_result(self, accepted: int, rejected: int) -> None:
        self.telemetry_sent.labels("accepted").inc(accepted)
        self.telemetry_sent.labels("rejected").inc(rejected)
