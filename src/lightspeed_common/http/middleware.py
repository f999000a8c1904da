"""The one middleware: request id, errors as JSON, one log line and metrics per request.

Only here do errors become HTTP responses. The log line carries the route
template, never the URL (query strings hold user ids), nor any body.
"""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from lightspeed_common import tracing
from lightspeed_common.errors import ApiError, Forbidden, MisdirectedRequest, RequestInvalid, RequestTimeout
from lightspeed_common.http.descriptors import HINT, RETRY_AFTER_SECONDS, ShortageLog, lack_of_descriptors
from lightspeed_common.http.keys import ALLOWED_HOSTS, BODY_PACE, HTTP_METRICS, REQUEST_ID, REQUEST_IDS
from lightspeed_common.http.pace import BodyDeadline

log = structlog.get_logger(__name__)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
INTERNAL_ERROR = "Internal server error"
INTERNAL_CAUSE = "An unexpected error occurred; see the server log"
# The response whose status line is on its way, set as it is prepared (`note_response_started`).
RESPONSE_STARTED = web.RequestKey("response_started", web.StreamResponse)
_REFUSED_FOR_DESCRIPTORS = ShortageLog("requests_refused_out_of_descriptors", "refused_requests")


def error_response(status: int, response: str, cause: str, headers: dict[str, str] | None = None) -> web.Response:
    """`{"detail": {"response", "cause"}}`, as lightspeed-stack sends it. Its published error schemas also
    list `status_code`, but its endpoints raise `HTTPException(**response.model_dump())`, which puts only
    `detail` on the wire; the wire wins."""
    body = {"detail": {"response": response, "cause": cause}}
    return web.json_response(body, status=status, headers=headers)


def _http_exception_response(exc: web.HTTPException) -> web.Response:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        cause = "The request body is larger than this server accepts"
    elif isinstance(exc, web.HTTPNotFound):
        cause = "No such route"
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        cause = f"Allowed methods: {', '.join(sorted(exc.allowed_methods))}"
    else:
        cause = exc.text or exc.reason
    response = error_response(exc.status, exc.reason, cause)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        response.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
    return response


def check_host(request: web.Request) -> None:
    """Refuse a request whose Host is not one of ours (421).

    DNS rebinding: a page on evil.example that re-resolves to 127.0.0.1 is
    same-origin with a daemon on loopback, Origin check included; only the
    Host header still says evil.example.
    """
    allowed = request.app[ALLOWED_HOSTS]
    if "*" in allowed:
        return
    name = (urlsplit(f"//{request.host}").hostname or "").lower()
    if name not in allowed:
        raise MisdirectedRequest(
            "Host not allowed", f"this server does not answer for host {name!r}; see service.allowed_hosts"
        )


def check_same_origin(request: web.Request) -> None:
    """Refuse a state-changing request a browser sent from another site (CSRF).

    Browsers always send Origin on cross-origin POST/PUT/DELETE; curl and
    other API clients send none, and are unaffected.
    """
    origin = request.headers.get("Origin")
    if request.method in SAFE_METHODS or origin is None:
        return
    if urlsplit(origin).netloc.lower() != request.host.lower():
        raise Forbidden("Cross-origin request refused", f"Requests from {origin} are not accepted")


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The whole body, however many network reads it takes; every handler reads its body here.

    413 past `limit` bytes (the app's client_max_size by default); 408 when
    the client pauses longer than the app's BODY_PACE allows, or sends slower
    than its minimum rate, so a client that stops sending, or trickles, does
    not hold the connection. `request.content.read(n)`
    returns only what has arrived so far: a body sent in two TCP segments
    would be cut in half. A body that has all arrived with its headers (the
    usual small JSON) is taken from the buffer without the pacing timers:
    under 64 connections of feedback, reading bodies fell from 8.2 % of the
    server's time to 3.6 %.
    """
    limit = request.client_max_size if limit is None else limit
    if request.content_length is not None:
        _check_size(request.content_length, limit)
    body = bytearray()
    if request.content.is_eof():  # all of it came with the headers (most bodies): nothing left to pace
        while chunk := request.content.read_nowait():
            body += chunk
            _check_size(len(body), limit)
        return bytes(body)
    try:
        async with asyncio.timeout(None) as timeout:
            deadline = BodyDeadline(timeout, request.app[BODY_PACE])
            while chunk := await request.content.readany():
                body += chunk
                deadline.received(len(body))
                _check_size(len(body), limit)
    except TimeoutError:
        raise RequestTimeout("Request timeout", deadline.cause()) from None
    return bytes(body)


def _check_size(size: int, limit: int) -> None:
    """413 for a body of `size` bytes (announced or received so far) past `limit`."""
    if size > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)


def _out_of_descriptors(request: web.Request, error: OSError) -> web.Response:
    """503 with Retry-After for a request that needed a file while the process had none left: nothing was
    wrong with it, and it may work shortly. The warning says so once per 10 s, with the limit."""
    _REFUSED_FOR_DESCRIPTORS.report(
        error, route=route_name(request), hint=f"each such request got 503 with Retry-After; {HINT}"
    )
    return error_response(
        503,
        "Service temporarily unavailable",
        "The server has no file descriptors left to serve this request; try again shortly",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _answer_to(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The response for a handler's exception (called while it is being handled)."""
    if (sent := request.get(RESPONSE_STARTED)) is not None:
        return _cut_short(request, sent, exc)
    if isinstance(exc, web.HTTPException):
        return _http_exception_response(exc)
    if isinstance(exc, RequestInvalid):
        return web.json_response({"detail": exc.errors}, status=422)
    # A server error caused by a lack of file descriptors (raised as it is, or wrapped): try again shortly.
    if (not isinstance(exc, ApiError) or exc.status >= 500) and (shortage := lack_of_descriptors(exc)):
        return _out_of_descriptors(request, shortage)
    if isinstance(exc, ApiError):
        response = error_response(exc.status, exc.response, exc.cause, exc.headers)
        if isinstance(exc, RequestTimeout):
            response.force_close()  # the rest of a stalled body must not be read as the next request
        return response
    log.exception("request_failed", route=route_name(request), method=request.method)
    return error_response(500, INTERNAL_ERROR, INTERNAL_CAUSE)


def _cut_short(request: web.Request, sent: web.StreamResponse, exc: Exception) -> web.StreamResponse:
    """A failure after the response's status line went out (a stream, an export) cannot become a response of
    its own: one written then lands inside the body, a second status line the client cannot parse. The
    connection is closed instead, without the body's end (the last chunk), so the client sees the response
    cut short, as from lightspeed-stack. Its status stays the one sent."""
    transport = request.transport
    gone = transport is None or transport.is_closing()
    route = route_name(request)
    client_left = gone and isinstance(exc, ConnectionError)  # so the write failed: nothing else went wrong
    if client_left:
        log.info("response_cut_short", route=route, method=request.method, reason="the client closed the connection")
    else:  # a failure of ours, whether or not the client is still there
        log.exception("request_failed", route=route, method=request.method, response_cut_short=True)
    cause = "client_left" if client_left else "failure"
    request.app[HTTP_METRICS].cut_short.labels(route, request.method, cause).inc()
    if transport is not None and not gone:
        transport.close()
    return sent


def route_name(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


async def note_response_started(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: after this, an error cannot be answered with a response of its own."""
    request[RESPONSE_STARTED] = response


def observed_app(*others: Middleware, client_max_size: int) -> web.Application:
    """An application whose requests all pass `observe` first (then `others`), with what it needs to know
    whether a response has started."""
    app = web.Application(middlewares=[observe, *others], client_max_size=client_max_size)
    app.on_response_prepare.append(note_response_started)
    return app


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID.fullmatch(incoming) else request.app[REQUEST_IDS]()
    request[REQUEST_ID] = request_id
    name = f"{request.method} {route_name(request)}"
    with tracing.server_span(name, request.headers, **{"http.request.method": request.method}) as span:
        response = await _observed(request, handler, request_id)
        if span is not None:
            span.set_attribute("http.response.status_code", response.status)
            span.set_attribute("lightspeed.request_id", request_id)
    return response


async def _observed(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        check_host(request)
        check_same_origin(request)
        response = await handler(request)
    except Exception as exc:
        response = _answer_to(request, exc)
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    seconds = time.perf_counter() - started
    if not response.prepared:
        response.headers["X-Request-ID"] = request_id
    route = route_name(request)
    request.app[HTTP_METRICS].observe_request(route, request.method, response.status, seconds)
    log.info(
        "request_handled",
        request_id=request_id,
        route=route,
        method=request.method,
        status=response.status,
        duration_ms=round(seconds * 1000, 2),
    )
    return response
