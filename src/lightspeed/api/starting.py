"""What the server answers while it starts: alive, not ready, and why.

The listening socket is open within a second or two of the process starting
(`serving.serve_app`'s `while_starting`); until the real application has
loaded its model and its answer index, this small application answers:

- `GET /liveness`: 200 `{"alive": true}` (the process is up; do not restart it);
- `GET /readiness`: 503 `{"ready": false, "reason": "loading: answer index 120/211 passages", ...}`,
  lightspeed-stack's readiness shape, the reason naming the step under way;
- anything else: 503 with `Retry-After` and lightspeed-stack's error shape.

Nothing here reads the configuration's secrets or any user's data.
"""

from __future__ import annotations

from aiohttp import web

RETRY_AFTER_SECONDS = 5
LLM_UNAVAILABLE = "LLM inference unavailable"


class StartupProgress:
    """The step start-up is on, as `/readiness` says it. Set from start-up's threads (a str assignment)."""

    def __init__(self) -> None:
        self.step = "starting"

    def reason(self) -> str:
        return f"loading: {self.step}"

    def index(self, done: int, total: int) -> None:
        self.step = f"answer index {done}/{total} passages"


PROGRESS = web.AppKey("startup_progress", StartupProgress)


async def _liveness(request: web.Request) -> web.Response:
    return web.json_response({"alive": True})


async def _readiness(request: web.Request) -> web.Response:
    body = {
        "ready": False,
        "reason": request.app[PROGRESS].reason(),
        "overall_status": "unhealthy",
        "impacts": [LLM_UNAVAILABLE],
        "providers": [],
    }
    return web.json_response(body, status=503)


async def _not_yet(request: web.Request) -> web.Response:
    cause = f"The service is starting ({request.app[PROGRESS].reason()}); try again shortly."
    return web.json_response(
        {"detail": {"response": "Service is starting", "cause": cause}},
        status=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def starting_app(progress: StartupProgress) -> web.Application:
    """The application served until the real one is ready."""
    app = web.Application(client_max_size=64 * 1024)
    app[PROGRESS] = progress
    app.router.add_get("/liveness", _liveness)
    app.router.add_get("/readiness", _readiness)
    app.router.add_route("*", "/{tail:.*}", _not_yet)
    return app
