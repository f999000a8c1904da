"""The openai provider against a small OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import ClientFactory
from tests.support import json_files
from tests.test_query import parse_sse

ANSWER_PIECES = ["Use ", "make ", "run", "."]


@dataclass
class FakeLLM:
    """Records the chat-completion requests it gets and answers as scripted."""

    status: int = 200
    body: Any = None
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        self.requests.append(payload)
        self.headers.append(dict(request.headers))
        await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.json_response({"error": {"message": "scripted failure"}}, status=self.status)
        if self.body is not None:
            return web.Response(text=self.body, content_type="application/json")
        if payload.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for piece in ANSWER_PIECES:
                chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
            return resp
        return web.json_response(
            {
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(ANSWER_PIECES)}}],
                "usage": {"prompt_tokens": 42, "completion_tokens": 4},
            }
        )

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "tiny"}]})


@pytest.fixture
async def llm(aiohttp_server: Any) -> tuple[FakeLLM, str]:
    fake = FakeLLM()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.completions)
    app.router.add_get("/v1/models", fake.models)
    server = await aiohttp_server(app, host="127.0.0.1")
    return fake, f"http://127.0.0.1:{server.port}/v1"


def openai_config(make_config: Any, base_url: str, **extra: Any) -> Any:
    return make_config(answers={"provider": "openai", "openai": {"base_url": base_url, "model": "tiny", **extra}})


async def test_openai_answers_with_passages_as_context(
    make_client: ClientFactory, make_config: Any, llm: tuple[FakeLLM, str], tmp_path: Path
) -> None:
    """The question and the retrieved passages reach the endpoint; its answer and usage come back."""
    fake, url = llm
    key_file = tmp_path / "key"
    key_file.write_text("sk-test-key\n")
    config = openai_config(make_config, url, api_key_file=str(key_file))
    client = await make_client(config)
    resp = await client.post("/v1/query", json={"query": "How do I start the server?", "system_prompt": "Be brief."})
    assert resp.status == 200
    body = await resp.json()
    assert body["response"] == "Use make run."
    assert (body["input_tokens"], body["output_tokens"]) == (42, 4)
    request = fake.requests[0]
    assert request["model"] == "tiny"
    assert request["stream"] is False
    system, user = request["messages"]
    assert system["role"] == "system"
    assert system["content"].startswith("Be brief.")
    assert "make run" in system["content"]  # the best passage is in the context
    assert user == {"role": "user", "content": "How do I start the server?"}
    assert fake.headers[0]["Authorization"] == "Bearer sk-test-key"
    record = json.loads(json_files(config.user_data_collection.transcripts_storage)[0].read_text())
    assert record["metadata"]["provider"] == "openai"
    assert record["metadata"]["model"] == "tiny"


async def test_openai_streaming(make_client: ClientFactory, make_config: Any, llm: tuple[FakeLLM, str]) -> None:
    """Deltas become token events in order; turn_complete holds their concatenation."""
    fake, url = llm
    client = await make_client(openai_config(make_config, url))
    resp = await client.post("/v1/streaming_query", json={"query": "How do I start the server?"})
    events = parse_sse(await resp.text())
    assert [e["data"]["token"] for e in events if e["event"] == "token"] == ANSWER_PIECES
    assert events[-2]["data"]["token"] == "Use make run."
    assert fake.requests[0]["stream"] is True
    assert "Authorization" not in fake.headers[0]


@pytest.mark.parametrize(
    ("status", "expected"),
    [(500, 503), (503, 503), (429, 503), (401, 502), (404, 502), (400, 502)],
)
async def test_openai_errors_map_to_503_or_502(
    make_client: ClientFactory, make_config: Any, llm: tuple[FakeLLM, str], status: int, expected: int
) -> None:
    """Unreachable or overloaded is 503, an error answer is 502, each with the upstream status as cause."""
    fake, url = llm
    fake.status = status
    config = openai_config(make_config, url)
    client = await make_client(config)
    for route in ("/v1/query", "/v1/streaming_query"):
        resp = await client.post(route, json={"query": "start"})
        assert resp.status == expected
        detail = (await resp.json())["detail"]
        assert f"HTTP {status}" in detail["cause"]
    assert json_files(config.user_data_collection.transcripts_storage) == []


async def test_openai_malformed_reply_is_502(
    make_client: ClientFactory, make_config: Any, llm: tuple[FakeLLM, str]
) -> None:
    fake, url = llm
    client = await make_client(openai_config(make_config, url))
    for body in ('{"choices": []}', "not json at all"):
        fake.body = body
        resp = await client.post("/v1/query", json={"query": "start"})
        assert resp.status == 502
        assert (await resp.json())["detail"]["response"] == "The answer provider returned an error"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_openai_unreachable_is_503_and_unready(make_client: ClientFactory, make_config: Any) -> None:
    """Nothing listening: queries are 503 and readiness says why."""
    client = await make_client(openai_config(make_config, f"http://127.0.0.1:{free_port()}/v1"))
    resp = await client.post("/v1/query", json={"query": "start"})
    assert resp.status == 503
    assert (await resp.json())["detail"]["response"] == "Unable to connect to the answer provider"
    ready = await client.get("/readiness")
    assert ready.status == 503
    assert [p["provider_id"] for p in (await ready.json())["providers"]] == ["openai"]


async def test_openai_timeout_is_503(make_client: ClientFactory, make_config: Any, llm: tuple[FakeLLM, str]) -> None:
    fake, url = llm
    fake.delay = 2.0
    client = await make_client(openai_config(make_config, url, timeout_seconds=0.2))
    resp = await client.post("/v1/query", json={"query": "start"})
    assert resp.status == 503
    assert (await resp.json())["detail"]["cause"] == "the request timed out"


async def test_openai_models_are_listed_and_ready(
    make_client: ClientFactory, make_config: Any, llm: tuple[FakeLLM, str]
) -> None:
    _, url = llm
    client = await make_client(openai_config(make_config, url))
    assert (await client.get("/readiness")).status == 200
    models = (await (await client.get("/v1/models")).json())["models"]
    assert [(m["identifier"], m["model_type"]) for m in models] == [
        ("openai/tiny", "llm"),
        ("sentence-transformers/all-MiniLM-L6-v2", "embedding"),
    ]
    ok = await client.post("/v1/query", json={"query": "start", "provider": "openai", "model": "tiny"})
    assert ok.status == 200
