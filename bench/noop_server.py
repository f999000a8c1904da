"""No-op aiohttp handlers: the baseline an aiohttp handler can reach on this machine."""

from __future__ import annotations

import sys

from aiohttp import web


async def noop(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"response": "feedback received"})


async def noop_telemetry(request: web.Request) -> web.Response:
    """Reads the batch, checks nothing, stores nothing."""
    await request.read()
    return web.json_response({"accepted": 100, "rejected": 0})


async def noop_upload(request: web.Request) -> web.Response:
    """Reads the whole upload as it streams in, keeps none of it."""
    async for _ in request.content.iter_chunked(256 * 1024):
        pass
    return web.json_response({"request_id": "noop"}, status=202)


async def alive(request: web.Request) -> web.Response:
    return web.json_response({"alive": True})


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/feedback", noop)
    app.router.add_post("/api/v1/telemetry", noop_telemetry)
    app.router.add_post("/api/ingress/v1/upload", noop_upload)
    app.router.add_get("/liveness", alive)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
