"""/v1/users/me/data and /v1/users/{user_id}/data: one user's data on this side. DELETE erases it
(lightspeed.privacy.erasure; the collector finishes the job through the note it is left), GET
exports it as one JSON document, streamed (lightspeed.privacy.export). Both are audited, and
GET /v1/audit lists the trail (lightspeed.privacy.audit)."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from lightspeed.api.state import CONFIG, SERVER, USER
from lightspeed.privacy.audit import audit
from lightspeed.privacy.export import export_document

MAX_AUDIT_EVENTS, DEFAULT_AUDIT_EVENTS = 1000, 100


async def _erase(request: web.Request, user_id: str) -> web.Response:
    server = request.app[SERVER]
    await server.turns.settled()  # the transcripts answered before the request are among the erased
    erased = await server.eraser.erase(user_id, request[USER].user_id)
    return web.json_response({"user_id": user_id, "erased": asdict(erased), "collector_notified": True})


async def erase_me(request: web.Request) -> web.Response:
    return await _erase(request, request[USER].user_id)


async def erase_user(request: web.Request) -> web.Response:
    return await _erase(request, request.match_info["user_id"])


async def _export(request: web.Request, user_id: str) -> web.StreamResponse:
    server = request.app[SERVER]
    await server.turns.settled()  # the transcripts answered before the request are in the export
    counts: dict[str, int] = {}
    document = export_document(request.app[CONFIG], server.store, user_id, server.hasher(user_id), counts)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    first = await anext(document)  # the store answers before the status is sent: a 503 stays a 503
    await response.prepare(request)
    await response.write(first)
    async for piece in document:
        await response.write(piece)
    await response.write_eof()
    await audit(server.store, "export", server.hasher(user_id), server.hasher(request[USER].user_id), counts)
    return response


async def export_me(request: web.Request) -> web.StreamResponse:
    return await _export(request, request[USER].user_id)


async def export_user(request: web.Request) -> web.StreamResponse:
    return await _export(request, request.match_info["user_id"])


async def audit_trail(request: web.Request) -> web.Response:
    """GET /v1/audit?limit=N: the newest N audit events, newest first (N from 1 to 1000; not a number: 100)."""
    raw = request.query.get("limit", "")
    limit = min(max(int(raw), 1), MAX_AUDIT_EVENTS) if raw.isdigit() else DEFAULT_AUDIT_EVENTS
    events = await request.app[SERVER].store.audit_events(limit)
    return web.json_response({"events": [asdict(event) for event in events]})
