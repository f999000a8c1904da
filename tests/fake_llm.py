"""A small OpenAI-compatible server on 127.0.0.1 that records what it gets and answers as scripted."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

ANSWER_PIECES = ["Use ", "make ", "run", "."]


@dataclass
class FakeLLM:
    """Records the chat-completion requests it gets and answers as scripted."""

    status: int = 200
    body: Any = None
    delay: float = 0.0
    stream_usage: bool = True  # answer stream_options.include_usage with a usage chunk, as OpenAI does
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
            if self.stream_usage and payload.get("stream_options", {}).get("include_usage"):
                usage = {"choices": [], "usage": {"prompt_tokens": 42, "completion_tokens": 4}}
                await resp.write(f"data: {json.dumps(usage)}\n\n".encode())
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
