"""Operational routes: liveness, readiness, metrics, models, the OpenAPI document."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import web

from lightspeed.api.keys import ANSWERS, CONFIG, METRICS, OPENAPI
from lightspeed_common.records import storage_roots


async def liveness(request: web.Request) -> web.Response:
    return web.json_response({"alive": True})


def _unwritable(paths: list[Path]) -> list[Path]:
    return [p for p in paths if not (p.is_dir() and os.access(p, os.W_OK | os.X_OK))]


async def readiness(request: web.Request) -> web.Response:
    """503 when the answer provider or a storage directory is not usable."""
    app = request.app
    storage = list(storage_roots(app[CONFIG]).values())
    reasons: list[str] = []
    unhealthy: list[str] = []
    provider = app[ANSWERS].provider
    provider_reason = await provider.unready_reason()
    if provider_reason:
        reasons.append(provider_reason)
        unhealthy.append(provider.name)
    for path in await asyncio.to_thread(_unwritable, storage):
        reasons.append(f"storage directory {path} is not writable")
    ready = not reasons
    body = {
        "ready": ready,
        "reason": "service is ready" if ready else "; ".join(reasons),
        "providers": unhealthy,
    }
    return web.json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[METRICS].render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def models(request: web.Request) -> web.Response:
    answers = request.app[ANSWERS]
    listed = [
        {
            "identifier": f"{choice.provider}/{choice.model}",
            "metadata": {"embedding_model": answers.index.embedder.name} if choice.provider == "local" else {},
            "api_model_type": "llm",
            "provider_id": choice.provider,
            "type": "model",
            "provider_resource_id": choice.model,
        }
        for choice in answers.available()
    ]
    return web.json_response({"models": listed})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])
