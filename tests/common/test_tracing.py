"""OpenTelemetry traces, on with the standard OTEL_* variables: a query's span and its children, and one
trace from the collector's upload through the ingest's receive, sent to a real OTLP/HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fake_llm import free_port
from tests.otlp import Receiver, Span
from tests.processes import call, process_config, start, wait_ready
from tests.system.test_pipeline import pipeline_config


@pytest.fixture
async def receiver(aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> Receiver:
    """The receiver, and the environment every process started from here inherits: traces to it, sent
    within 50 ms of ending."""
    found = Receiver()
    server = await aiohttp_server(found.app())
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", str(server.make_url("")).rstrip("/"))
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    return found


def by_name(spans: list[Span], name: str) -> Span:
    return next(s for s in spans if s.name == name)


async def test_a_query_is_one_trace_with_retrieval_the_provider_call_and_the_record_write(
    receiver: Receiver, tmp_path: Path, docs_dir: Path
) -> None:
    port = free_port()
    proc = start(process_config(tmp_path, docs_dir, port), tmp_path)
    try:
        await asyncio.to_thread(wait_ready, port, proc)
        answer = await asyncio.to_thread(
            call, port, "POST", "/v1/query", {"query": "How do I start the server?"}, "any-token"
        )
        assert answer["conversation_id"]
        await receiver.wait_for("lightspeed", {"POST /v1/query", "retrieval", "provider call", "record write"})
        assert '"event": "end"' in await asyncio.to_thread(streamed, port, "How do I start the server?")
        spans = await receiver.wait_for("lightspeed", {"POST /v1/streaming_query"})
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    request = by_name(spans, "POST /v1/query")
    assert request.parent_id == ""  # the trace's root: the caller sent no traceparent
    assert request.attributes["http.response.status_code"] == 200
    for child in ("retrieval", "provider call", "record write"):
        assert by_name(spans, child).trace_id == request.trace_id
        assert by_name(spans, child).parent_id == request.span_id
    assert by_name(spans, "provider call").attributes["gen_ai.system"] == "local"
    assert by_name(spans, "record write").attributes["lightspeed.record_kind"] == "transcript"
    stream = by_name(spans, "POST /v1/streaming_query")
    calls = [s for s in spans if s.name == "provider call" and s.trace_id == stream.trace_id]
    assert [s.parent_id for s in calls] == [stream.span_id]  # the stream, from its first piece to its end


def streamed(port: int, question: str) -> str:
    """POST /v1/streaming_query; the server-sent events, whole."""
    body = json.dumps({"query": question}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/streaming_query", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", "Bearer any-token")
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - loopback only
        return str(resp.read().decode())


def one_record_and_the_ingest(path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """One feedback record waiting, and lightspeed-ingest started from the same config."""
    feedback = Path(yaml.safe_load(path.read_text())["user_data_collection"]["feedback_storage"])
    feedback.mkdir(parents=True)
    (feedback / "f1.json").write_text('{"user_id": "u", "sentiment": 1}')
    return subprocess.Popen([sys.executable, "-m", "ingest", "serve", "--config", str(path)], env=env)


async def test_the_collectors_upload_and_the_ingests_receive_share_one_trace(
    receiver: Receiver, tmp_path: Path, docs_dir: Path
) -> None:
    api, ingest_port = free_port(), free_port()
    path = pipeline_config(tmp_path, docs_dir, api, ingest_port, interval=3600)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    ingest = await asyncio.to_thread(one_record_and_the_ingest, path, env)
    try:
        await asyncio.to_thread(wait_ready, ingest_port, ingest)  # type: ignore[arg-type]
        once = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collector", "run", "--once", "--config", str(path), env=env
        )
        assert await asyncio.wait_for(once.wait(), 120) == 0
        collector = await receiver.wait_for("lightspeed-collector", {"package", "upload"})
        received = await receiver.wait_for("lightspeed-ingest", {"POST /api/ingress/v1/upload", "receive", "index"})
    finally:
        ingest.terminate()
        ingest.wait(timeout=60)
    upload = by_name(collector, "upload")
    request = by_name(received, "POST /api/ingress/v1/upload")
    assert request.trace_id == upload.trace_id  # the upload's traceparent header carried it
    assert request.parent_id != ""
    assert by_name(received, "receive").parent_id == request.span_id
    assert by_name(received, "index").parent_id == request.span_id
    assert upload.attributes["lightspeed.records"] == 1


def test_with_tracing_off_nothing_of_opentelemetry_is_imported() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = (
        "import sys, lightspeed.api.app, collector.daemon, ingest.app\n"
        "from lightspeed_common import tracing\n"
        "assert tracing.start('lightspeed') is False\n"
        "with tracing.span('nothing'):\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
