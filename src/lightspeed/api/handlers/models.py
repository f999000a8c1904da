"""The embedding model API: register, list, activate, delete (admin)."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from lightspeed.api.payloads import parse_body
from lightspeed.api.settings_payloads import EmbeddingModelActivation, EmbeddingModelRegistration
from lightspeed.api.state import METRICS, SERVER
from lightspeed_common.http.middleware import read_body


async def list_models(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVER].models.listing())


async def register_model(request: web.Request) -> web.Response:
    """201 with the measured metadata; 422 with the reason (and the stored failure) when unusable."""
    body = parse_body(EmbeddingModelRegistration, await read_body(request))
    result = await request.app[SERVER].models.register(
        body.model_name, body.model_source, body.local_path, body.activate
    )
    model = result["model"]
    metrics = request.app[METRICS]
    metrics.model_registrations.labels(model["status"]).inc()
    if result["telemetry"]["queued"]:
        metrics.telemetry_queued.inc()
    if model["status"] == "ready":
        return web.json_response(result, status=201)
    detail = {"response": "The embedding model cannot be used", "cause": model["error"]["reason"]}
    return web.json_response({"detail": detail, "error_code": model["error"]["code"], **result}, status=422)


async def activate_model(request: web.Request) -> web.Response:
    """202: the index is rebuilt in the background; GET /v1/embedding-models shows the progress."""
    body = parse_body(EmbeddingModelActivation, await read_body(request))
    activation = await request.app[SERVER].models.activate(body.model_name)
    return web.json_response({"activation": asdict(activation)}, status=202)


async def delete_active(request: web.Request) -> web.Response:
    """The active model is switched (PUT), never deleted: 405, as for any method the resource lacks."""
    raise web.HTTPMethodNotAllowed("DELETE", ["PUT"])


async def delete_model(request: web.Request) -> web.Response:
    await request.app[SERVER].models.delete(request.match_info["model_name"])
    return web.Response(status=204)
