"""DELETE /v1/users/me/data and /v1/users/{user_id}/data: erase one user's data on this side
(lightspeed.privacy.erasure); the collector finishes the job through the note it is left."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from lightspeed.api.state import SERVER, USER


async def _erase(request: web.Request, user_id: str) -> web.Response:
    erased = await request.app[SERVER].eraser.erase(user_id)
    return web.json_response({"user_id": user_id, "erased": asdict(erased), "collector_notified": True})


async def erase_me(request: web.Request) -> web.Response:
    return await _erase(request, request[USER].user_id)


async def erase_user(request: web.Request) -> web.Response:
    return await _erase(request, request.match_info["user_id"])
