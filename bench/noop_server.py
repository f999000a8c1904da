"""A no-op aiohttp server: the baseline an aiohttp handler can reach on this machine."""

from __future__ import annotations

import sys

from aiohttp import web


async def noop(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"response": "feedback received"})


async def alive(request: web.Request) -> web.Response:
    return web.json_response({"alive": True})


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/feedback", noop)
    app.router.add_get("/liveness", alive)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
