"""The telemetry API: status, consent, enable/disable, queue view, send now, purge (admin)."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from lightspeed.api.payloads import parse_body
from lightspeed.api.settings_payloads import TelemetryUpdate
from lightspeed.api.state import SERVER
from lightspeed.telemetry.registry_client import RegistryRejected, RegistryUnavailable
from lightspeed.telemetry.service import NOT_ENABLED
from lightspeed_common.errors import BadGateway, Conflict, ServiceUnavailable
from lightspeed_common.http.middleware import read_body
from lightspeed_common.telemetry_schema import FIELD_NAMES

MAX_WAIT_SECONDS = 30.0
log = structlog.get_logger(__name__)


def _status(request: web.Request) -> dict[str, object]:
    return {**request.app[SERVER].telemetry.status(), "sender": request.app[SERVER].sender.status()}


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(_status(request))


async def get_consent(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVER].telemetry.consent())


async def put_status(request: web.Request) -> web.Response:
    body = parse_body(TelemetryUpdate, await read_body(request))
    service = request.app[SERVER].telemetry
    if body.enabled:
        await service.enable(body.consent_version or "")
    else:
        await service.disable()
    request.app[SERVER].sender.reschedule()
    return web.json_response(_status(request))


async def get_queue(request: web.Request) -> web.Response:
    """Exactly what would be sent, in order; `will_send` is false for events dated before consent."""
    service = request.app[SERVER].telemetry
    consented = service.consented_at
    events = [
        {
            "event": queued.event.model_dump(mode="json"),
            "will_send": consented is not None and queued.event.created_at() >= consented,
        }
        for queued in service.queue.events()
    ]
    counts = service.queue.counts()
    return web.json_response(
        {"fields": list(FIELD_NAMES), "events": events, "bytes": counts["bytes"], "by_model": counts["by_model"]}
    )


async def purge_queue(request: web.Request) -> web.Response:
    return web.json_response({"purged": await request.app[SERVER].telemetry.purge()})


async def send_now(request: web.Request) -> web.Response:
    """Start a send; with `?wait=N` wait up to N seconds (max 30) for its outcome, else 202."""
    service = request.app[SERVER].telemetry
    if not service.is_effective():
        reason = service.disabled_reason()
        if reason in (None, NOT_ENABLED):
            reason = "nothing is sent until it is turned on: `lightspeed telemetry enable`, or the /settings page"
        raise Conflict("Telemetry is not enabled", reason)
    try:
        wait = min(max(float(request.query.get("wait", "0")), 0.0), MAX_WAIT_SECONDS)
    except ValueError:
        raise web.HTTPBadRequest(text="wait must be a number of seconds") from None
    task = request.app[SERVER].sender.send_now()
    try:
        outcome = await asyncio.wait_for(asyncio.shield(task), timeout=wait)
    except TimeoutError:
        outcome = None
    if outcome is None:
        return web.json_response({"result": "sending", "queued": len(service.queue)}, status=202)
    return web.json_response(outcome.to_json())


async def request_deletion(request: web.Request) -> web.Response:
    """Ask the registry to delete this installation's contributions (its client id is all that is sent)."""
    service = request.app[SERVER].telemetry
    client_id = service.client_id
    if client_id is None:
        raise Conflict("No client id", "telemetry was never enabled here, so the registry holds nothing from it")
    if service.config.registry_url is None:
        raise Conflict("No registry", "telemetry.registry_url is not configured")
    try:
        reply = await request.app[SERVER].sender.request_deletion(client_id)
    except RegistryUnavailable as exc:
        raise ServiceUnavailable("The registry cannot be reached", f"try again later ({exc})") from None
    except RegistryRejected as exc:
        raise BadGateway("The registry refused the deletion request", str(exc)) from None
    log.info("telemetry_deletion_requested", deleted=reply.get("deleted"))
    return web.json_response({"requested": True, "registry": reply})
