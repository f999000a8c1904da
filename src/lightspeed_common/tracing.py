"""OpenTelemetry traces (issue 27; docs/observability.md): off by default, on with the standard OTEL_*
environment variables, as lightspeed-stack's.

Tracing is on when an OTLP endpoint is named (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and `OTEL_SDK_DISABLED` is not `true`. Then `start` builds the
SDK's tracer provider with a batching OTLP/HTTP exporter, which reads the rest of OTEL_* itself
(headers, certificates, timeout); `OTEL_SERVICE_NAME` names the service (default: the daemon), and
`OTEL_PROPAGATORS` (default W3C trace context and baggage; `none` to ignore incoming ones) says how a
trace crosses processes. While tracing is off nothing of OpenTelemetry is imported, and `span` is a
context manager that does nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import structlog

log = structlog.get_logger(__name__)

_state: dict[str, Any] = {}  # "tracer", "provider", "propagate", "kind": set while tracing is on


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def start(service: str) -> bool:
    """Turn tracing on for this process when the environment asks; whether it is on. A missing package is
    logged (the service runs untraced), never fatal."""
    if _state or not wanted():
        return bool(_state)
    try:
        from opentelemetry import propagate, trace  # noqa: PLC0415 - only when tracing is on
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    except ImportError as exc:
        log.warning("tracing_unavailable", reason=str(exc), hint="pip install 'lightspeed[tracing]'")
        return False
    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _state.update(tracer=trace.get_tracer("lightspeed"), provider=provider, propagate=propagate, kind=trace.SpanKind)
    log.info("tracing_started", service=name)
    return True


def stop() -> None:
    """Send the spans still batched, and turn tracing off (at the process's end)."""
    provider = _state.pop("provider", None)
    _state.clear()
    if provider is not None:
        provider.shutdown()


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[None]:
    """A child of the current span (or a new trace's root) around the block, when tracing is on."""
    tracer = _state.get("tracer")
    if tracer is None:
        yield
        return
    with tracer.start_as_current_span(name, attributes=_plain(attributes)):
        yield


@contextlib.contextmanager
def server_span(name: str, headers: Mapping[str, str], **attributes: Any) -> Iterator[Any]:
    """A request's span, continuing the caller's trace when its headers carry one (`traceparent`); yields
    the span (None while tracing is off) so the handler can add the status."""
    tracer = _state.get("tracer")
    if tracer is None:
        yield None
        return
    context = _state["propagate"].extract(dict(headers))
    kind = _state["kind"].SERVER
    with tracer.start_as_current_span(name, context=context, kind=kind, attributes=_plain(attributes)) as current:
        yield current


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current trace's context (`traceparent`, ...) to an outgoing request's headers."""
    if "propagate" in _state:
        _state["propagate"].inject(headers)


def _plain(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in attributes.items() if isinstance(value, str | int | float | bool)}
