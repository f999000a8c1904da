"""Operational routes: liveness, readiness, metrics, models, the OpenAPI document."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import web

from lightspeed.api.starting import LLM_UNAVAILABLE
from lightspeed.api.state import CONFIG, METRICS, OPENAPI, SERVER, USER
from lightspeed_common.records import storage_roots
from lightspeed_common.version import VERSION

ROOT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lightspeed</title></head>
<body><h1>lightspeed {version}</h1>
<p>An assistant API compatible with lightspeed-stack: <a href="/openapi.json">/openapi.json</a>
describes every route; <a href="/settings">/settings</a> is the admin page.</p></body></html>
"""
# We run no Llama Stack; lightspeed-stack's clients read this field, so it says so.
NO_LLAMA_STACK = "none"


async def root(request: web.Request) -> web.Response:
    """GET /: a short page naming the service (authenticated, as lightspeed-stack's)."""
    return web.Response(text=ROOT_PAGE.format(version=VERSION), content_type="text/html")


async def authorized(request: web.Request) -> web.Response:
    """POST /authorized: who the credentials say the caller is. `skip_userid_check` is true when
    the auth module takes the user id on trust (noop, noop-with-token), false for api-key and jwk-token."""
    app = request.app
    user = request[USER]
    trusted = app[CONFIG].authentication.module in ("noop", "noop-with-token")
    return web.json_response({"user_id": user.user_id, "username": user.username, "skip_userid_check": trusted})


async def info(request: web.Request) -> web.Response:
    return web.json_response({"name": "lightspeed", "service_version": VERSION, "llama_stack_version": NO_LLAMA_STACK})


async def liveness(request: web.Request) -> web.Response:
    return web.json_response({"alive": True})


def _unwritable(paths: list[Path]) -> list[Path]:
    return [p for p in paths if not (p.is_dir() and os.access(p, os.W_OK | os.X_OK))]


RECORDS_UNAVAILABLE = "Transcripts and feedback cannot be stored"
STATE_UNAVAILABLE = "Conversations and settings unavailable"


async def readiness(request: web.Request) -> web.Response:
    """503 when the answer provider or a storage directory is not usable, in lightspeed-stack's shape:
    `overall_status` unhealthy when no answer can be given, degraded when answers work but records
    cannot be stored; `impacts` says what does not work; `providers` lists the unhealthy ones."""
    app = request.app
    storage = list(storage_roots(app[CONFIG]).values())
    reasons: list[str] = []
    impacts: list[str] = []
    unhealthy: list[dict[str, str]] = []
    provider = app[SERVER].answers.provider
    provider_reason = await provider.unready_reason()
    if provider_reason:
        reasons.append(provider_reason)
        impacts.append(LLM_UNAVAILABLE)
        unhealthy.append({"provider_id": provider.name, "status": "unhealthy", "message": provider_reason})
    # Conversations, settings and the telemetry queue: without them no question can be answered.
    database = app[SERVER].health.problem
    if database:
        reasons.append(f"database: {database}")
        impacts.append(STATE_UNAVAILABLE)
    unwritable = await asyncio.to_thread(_unwritable, storage)
    reasons += [f"storage directory {path} is not writable" for path in unwritable]
    if unwritable:
        impacts.append(RECORDS_UNAVAILABLE)
    ready = not reasons
    body = {
        "ready": ready,
        "reason": "All providers are healthy" if ready else "; ".join(reasons),
        "overall_status": "healthy" if ready else "unhealthy" if provider_reason or database else "degraded",
        "impacts": impacts or None,
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


def _catalog_model(provider: str, model: str, model_type: str, metadata: dict[str, object]) -> dict[str, object]:
    return {
        "identifier": f"{provider}/{model}",
        "metadata": metadata,
        "api_model_type": model_type,
        "provider_id": provider,
        "type": "model",
        "provider_resource_id": model,
        "model_type": model_type,
    }


async def models(request: web.Request) -> web.Response:
    """The answer models (`llm`) and the embedding model retrieval uses (`embedding`); `?model_type=`
    keeps one type (an unknown type: none)."""
    app = request.app
    answers = app[SERVER].answers
    embedder = answers.index.embedder
    listed = [
        _catalog_model(
            choice.provider,
            choice.model,
            "llm",
            {"embedding_model": embedder.name} if choice.provider == "local" else {},
        )
        for choice in answers.available()
    ]
    listed.append(
        _catalog_model("sentence-transformers", embedder.name, "embedding", {"embedding_dimension": embedder.dimension})
    )
    wanted = request.query.get("model_type")
    if wanted is not None:
        listed = [m for m in listed if m["model_type"] == wanted]
    return web.json_response({"models": listed})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])
