"""The model registry: `POST /api/v1/telemetry` and the deletion request for one client id.

The request body is a JSON array of `model_registration` events; each is
validated against the client's own schema (`ModelRegistrationEvent`: unknown
fields, wrong types, a timestamp in the future or older than
`max_event_age_days` are refused, per event). The reply is
`{"accepted": N, "rejected": M, "duplicates": D, "results": [...]}`; a
duplicate (the same client, model and timestamp, re-sent after a lost reply)
counts as accepted and is not counted again.

Limits: the body size, the events per request, requests per source address
and events per client id (429 with Retry-After). Addresses and client ids
live only in the in-memory rate limiter.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

import structlog
from aiohttp import web

from ingest.context import INGEST, Ingest
from ingest.ratelimit import retry_after
from ingest.storage import DailyLimits, contributor_hash
from lightspeed_common.config_ingest import IngestTelemetryConfig
from lightspeed_common.errors import BadRequest, PayloadTooLarge
from lightspeed_common.http.middleware import error_response, read_body
from lightspeed_common.json_text import parse_json
from lightspeed_common.telemetry_schema import ModelRegistrationEvent, check_client_id, parse_event

log = structlog.get_logger("ingest.registry")


def _too_many(ingest: Ingest, scope: str, wait: float) -> web.Response:
    ingest.metrics.rate_limited.labels(scope).inc()
    what = {
        "address": "requests from this address",
        "client": "events from this client",
        "new_clients": "new installations from this address",
    }[scope]
    cause = f"too many {what}; retry after the Retry-After delay"
    return error_response(429, "Too many requests", cause, {"Retry-After": retry_after(wait)})


def source_address(request: web.Request, trusted: tuple[IPv4Network | IPv6Network, ...]) -> str:
    """The client's address: the peer, or behind trusted proxies the last untrusted X-Forwarded-For hop."""
    hops = [request.remote or "unknown"]
    for value in reversed(request.headers.getall("X-Forwarded-For", [])):
        hops[:0] = [hop.strip() for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            address = ip_address(hop)
        except ValueError:
            return hop  # not an address: whatever sent it is not a trusted proxy's doing
        if not any(address in network for network in trusted):
            return hop
    return hops[0]


def _address_limited(request: web.Request, ingest: Ingest) -> web.Response | None:
    address = source_address(request, ingest.config.telemetry.rate_limit.trusted_proxies)
    wait = ingest.by_address.take({address: 1})
    return _too_many(ingest, "address", wait) if wait else None


async def _read_json(request: web.Request, limit: int) -> Any:
    body = await read_body(request, limit)
    try:
        return parse_json(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Invalid JSON", "the body must be a JSON array of model_registration events") from None


def _client_key(client_id: str) -> str:
    return hashlib.sha256(client_id.encode()).hexdigest()


async def telemetry(request: web.Request) -> web.Response:
    ingest = request.app[INGEST]
    settings = ingest.config.telemetry
    ingest.telemetry_keys.check_if_configured(request)
    if limited := _address_limited(request, ingest):
        return limited
    events = await _read_json(request, settings.max_body_bytes)
    if not isinstance(events, list):
        raise BadRequest("Invalid body", "the body must be a JSON array of model_registration events")
    if len(events) > settings.max_events_per_request:
        raise PayloadTooLarge(
            "Too many events", f"at most {settings.max_events_per_request} events per request; send several batches"
        )
    now = datetime.now(UTC)
    results: list[dict[str, Any]] = []
    valid: list[ModelRegistrationEvent] = []
    valid_at: list[int] = []
    for index, event in enumerate(events):
        parsed, problems = parse_event(event, now, settings.max_event_age_days)
        results.append({"index": index, "status": "rejected" if parsed is None else "accepted", "errors": problems})
        if parsed is not None:
            valid.append(parsed)
            valid_at.append(index)
    per_client = Counter(_client_key(event.client_id) for event in valid)
    if wait := ingest.by_client.wait_seconds(per_client):
        return _too_many(ingest, "client", wait)
    if limited := await _new_clients_limited(request, ingest, valid):
        return limited
    ingest.by_client.take(per_client)
    outcomes = await _count_events(request, ingest, valid) if valid else []
    for index, outcome in zip(valid_at, outcomes, strict=True):
        if outcome != "accepted":
            results[index]["status"] = outcome
            if outcome == "capped":
                results[index]["errors"] = [_capped_reason(settings)]
    duplicates, capped = outcomes.count("duplicate"), outcomes.count("capped")
    rejected = len(events) - len(valid)
    ingest.metrics.telemetry_events.labels("accepted").inc(len(valid) - duplicates - capped)
    ingest.metrics.telemetry_events.labels("duplicate").inc(duplicates)
    ingest.metrics.telemetry_events.labels("capped").inc(capped)
    ingest.metrics.telemetry_events.labels("rejected").inc(rejected)
    if rejected:
        first = next(r for r in results if r["status"] == "rejected")
        log.info("telemetry_events_rejected", rejected=rejected, example=first["errors"][:3])
    log.info("telemetry_received", accepted=len(valid), duplicates=duplicates, capped=capped, rejected=rejected)
    return web.json_response(
        {"accepted": len(valid), "rejected": rejected, "duplicates": duplicates, "capped": capped, "results": results}
    )


async def _count_events(request: web.Request, ingest: Ingest, events: list[ModelRegistrationEvent]) -> list[str]:
    """Each event's outcome, capped by the model's day, the installation's share of it and the source
    address's share (re-sends of counted events use none of it)."""
    settings = ingest.config.telemetry
    address = source_address(request, settings.rate_limit.trusted_proxies)
    shares = ingest.events_by_address_model
    names = {event.model_name for event in events}
    limits = DailyLimits(
        settings.max_events_per_model_per_day,
        settings.max_events_per_client_per_model_per_day,
        {name: shares.available(f"{address}\n{name}") for name in names},
    )
    outcomes: list[str] = await ingest.db.run(ingest.db.storage.add_events, events, limits)
    counted = Counter(
        event.model_name for event, outcome in zip(events, outcomes, strict=True) if outcome == "accepted"
    )
    for name, count in counted.items():
        shares.take_up_to(f"{address}\n{name}", count)
    return outcomes


def _capped_reason(settings: IngestTelemetryConfig) -> str:
    return (
        f"a daily limit of this model's events is reached: {settings.max_events_per_model_per_day} in all, "
        f"{settings.max_events_per_client_per_model_per_day} per installation, "
        f"{settings.max_events_per_address_per_model_per_day} per source address"
    )


async def _new_clients_limited(
    request: web.Request, ingest: Ingest, events: list[ModelRegistrationEvent]
) -> web.Response | None:
    """429 when this address brings more new installations than its bucket allows.

    Anonymous senders only: a telemetry key is already a limit on who may send.
    """
    if ingest.telemetry_keys.keys or not events:
        return None
    contributors = {contributor_hash(e.model_name, e.client_id): e.client_id for e in events}
    known = await ingest.db.run(ingest.db.storage.known_contributors, list(contributors))
    new_clients = {client for contributor, client in contributors.items() if contributor not in known}
    if not new_clients:
        return None
    address = source_address(request, ingest.config.telemetry.rate_limit.trusted_proxies)
    wait = ingest.new_clients_by_address.take({address: len(new_clients)})
    return _too_many(ingest, "new_clients", wait) if wait else None


def parse_client_id(value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest("Invalid client id", "client_id must be the UUID shown by `lightspeed telemetry status`")
    try:
        return check_client_id(value.strip().lower())
    except ValueError:
        raise BadRequest("Invalid client id", "client_id must be a UUID such as 3f0c...-...") from None


async def delete_client(ingest: Ingest, client_id: str, via: str) -> dict[str, int]:
    removed = await ingest.db.run(ingest.db.storage.delete_client, client_id, via, datetime.now(UTC))
    ingest.metrics.deletions.inc()
    log.info("telemetry_client_deleted", via=via, **removed)
    return removed


async def client_deletion(request: web.Request) -> web.Response:
    """`DELETE /api/v1/telemetry/clients/{client_id}`: a client asks for its contributions to be removed.

    Knowing the random client id is the proof of ownership; the id is not kept.
    """
    ingest = request.app[INGEST]
    ingest.telemetry_keys.check_if_configured(request)
    if limited := _address_limited(request, ingest):
        return limited
    client_id = parse_client_id(request.match_info["client_id"])
    return web.json_response({"deleted": await delete_client(ingest, client_id, "client")})
