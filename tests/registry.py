"""A real aiohttp model registry for the telemetry tests: records what it receives, answers as scripted."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: str | None = None  # None: accept every event, with per-event results
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hold: asyncio.Event | None = None  # answer only once the test sets it


@dataclass
class Request:
    headers: dict[str, str]
    raw: bytes
    events: list[dict[str, Any]]
    at: float


@dataclass
class Registry:
    """Scripted answers are used in order; after them every batch gets `default`."""

    script: list[Answer] = field(default_factory=list)
    default: Answer = field(default_factory=Answer)
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set at every request

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        events = json.loads(raw)
        self.requests.append(Request(dict(request.headers), raw, events, time.monotonic()))
        answer = self.script.pop(0) if self.script else self.default
        self.arrived.set()
        if answer.hold is not None:
            await answer.hold.wait()
        if answer.delay:
            await asyncio.sleep(answer.delay)
        body = answer.body
        if body is None:
            results = [{"index": i, "status": "accepted"} for i in range(len(events))]
            body = json.dumps({"accepted": len(events), "rejected": 0, "results": results})
        return web.Response(status=answer.status, text=body, headers=answer.headers, content_type="application/json")

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for request in self.requests for event in request.events]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/telemetry", self.handle)
        return app


def fast_telemetry(url: str, **extra: Any) -> dict[str, Any]:
    """A telemetry config section pointing at `url`, with waits short enough for tests."""
    return {
        "registry_url": url,
        "first_send_delay_seconds": 0,
        "retry": {
            "initial_seconds": 0.01,
            "max_seconds": 0.05,
            "jitter_seconds": 0,
            "max_attempts": 3,
            "max_elapsed_seconds": 5,
            "max_retry_after_seconds": 1,
        },
        **extra,
    }
