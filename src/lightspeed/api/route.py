"""A route's declaration (what the router and /openapi.json are built from) and its guard."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel

from lightspeed.access import forbidden
from lightspeed.api import payloads as p
from lightspeed.api.state import SERVER, USER
from lightspeed_common.config_auth import Action
from lightspeed_common.errors import Unauthorized

ResponseBody = type[BaseModel] | str | tuple[str, ...] | None


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    # A status's body: a model (JSON), media types (text), or None (no body, e.g. 204).
    responses: dict[int, ResponseBody] = field(default_factory=dict)
    authenticated: bool = True
    # What the caller's roles must allow (lightspeed.access); None on an authenticated route: any caller.
    action: Action | None = None
    # A browser page: without credentials, a Basic challenge instead of the JSON 401.
    challenge: Callable[[], web.Response] | None = None
    # Query parameters: name -> description (all optional strings).
    query: dict[str, str] = field(default_factory=dict)


ERRORS: dict[int, ResponseBody] = {
    401: p.ErrorResponse,
    403: p.ErrorResponse,
    422: p.UnprocessableResponse,
}
ANSWER_ERRORS: dict[int, ResponseBody] = {
    **ERRORS,
    404: p.ErrorResponse,
    413: p.ErrorResponse,
    502: p.ErrorResponse,
    503: p.ErrorResponse,
}

AUTH_ERRORS: dict[int, ResponseBody] = {401: p.ErrorResponse, 403: p.ErrorResponse}
CONVERSATION_ERRORS: dict[int, ResponseBody] = {**ERRORS, 400: p.ErrorResponse, 404: p.ErrorResponse}


def guarded(route: Route) -> Handler:
    """The route's handler behind its authentication and authorization: the caller, known and allowed
    the route's action, is `request[USER]` to the handler."""
    if not route.authenticated:
        return route.handler
    action, handler, challenge = route.action, route.handler, route.challenge

    async def guard(request: web.Request) -> web.StreamResponse:
        try:
            user = await request.app[SERVER].auth(request)
        except Unauthorized:
            if challenge is None:
                raise
            return challenge()
        if action is not None and not user.may(action):
            raise forbidden(user.user_id)
        request[USER] = user
        return await handler(request)

    return guard
