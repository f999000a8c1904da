"""/admin and its JSON API, behind the admin key (Bearer, or Basic auth's password in a browser).

- `GET /api/admin/v1/models`: aggregated counts per model.
- `GET /api/admin/v1/uploads?limit=N`: recent uploads with record and duplicate counts, and totals.
- `POST /api/admin/v1/deletions` `{"client_id": ...}`: remove that client's contributions.
- `GET /api/admin/v1/deletions`: what past deletion requests removed (nothing identifies the client).
- `POST /api/admin/v1/erasures` `{"user_hash": ...}`: erase that user's records from every archive, now.
- `GET /api/admin/v1/erasures`: the erasures received and what they removed (none names the user).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import structlog
from aiohttp import web

from ingest.context import INGEST
from ingest.erasure import apply_pending
from ingest.ratelimit import retry_after
from ingest.registry import delete_client, parse_client_id, source_address
from lightspeed_common.errors import BadRequest, Forbidden, TooManyRequests
from lightspeed_common.http.bearer import UnreadableCredentials
from lightspeed_common.http.middleware import read_body
from lightspeed_common.http.pages import sign_in, static_page
from lightspeed_common.json_text import parse_json
from lightspeed_common.records import Erasure

log = structlog.get_logger("ingest")


async def models(request: web.Request) -> web.Response:
    ingest = request.app[INGEST]
    check_admin(request)
    rows = await ingest.db.run(ingest.db.storage.model_counts)
    return web.json_response(
        {"models": rows, "retention_days": ingest.config.telemetry.retention_days},
        headers={"Cache-Control": "no-store"},
    )


async def uploads(request: web.Request) -> web.Response:
    ingest = request.app[INGEST]
    check_admin(request)
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        raise BadRequest("Invalid limit", "limit must be a whole number from 1 to 1000") from None
    if not 1 <= limit <= 1000:
        raise BadRequest("Invalid limit", "limit must be a whole number from 1 to 1000")
    storage = ingest.db.storage
    recent = await ingest.db.run(storage.recent_uploads, limit)
    totals = await ingest.db.run(storage.upload_totals)
    return web.json_response(
        {"uploads": recent, "totals": totals, "retention_days": ingest.config.archive_retention_days},
        headers={"Cache-Control": "no-store"},
    )


def check_admin(request: web.Request) -> None:
    """The admin key, with wrong guesses throttled per source address (429 with Retry-After).

    Only wrong keys count (403, or 401 for one that is not ASCII), not a missing one (a browser's first request).
    """
    ingest = request.app[INGEST]
    address = source_address(request, ingest.config.telemetry.rate_limit.trusted_proxies)
    if wait := ingest.admin_failures.wait_seconds({address: 1}):
        raise TooManyRequests(
            "Too many wrong admin keys",
            "too many wrong admin keys from this address; retry after the Retry-After delay",
            {"Retry-After": retry_after(wait)},
        )
    try:
        ingest.admin_keys.check(request)
    except (Forbidden, UnreadableCredentials) as exc:
        ingest.admin_failures.take({address: 1})
        if isinstance(exc, Forbidden):  # an unreadable key was logged where it was read
            log.warning("admin_key_refused")
        raise


async def deletions(request: web.Request) -> web.Response:
    ingest = request.app[INGEST]
    check_admin(request)
    log_rows = await ingest.db.run(ingest.db.storage.deletion_log, 50)
    return web.json_response({"deletions": log_rows}, headers={"Cache-Control": "no-store"})


async def request_deletion(request: web.Request) -> web.Response:
    ingest = request.app[INGEST]
    check_admin(request)
    try:
        body = parse_json(await read_body(request))
    except ValueError:
        raise BadRequest("Invalid JSON", 'send {"client_id": "<uuid>"}') from None
    if not isinstance(body, dict):
        raise BadRequest("Invalid body", 'send {"client_id": "<uuid>"}')
    client_id = parse_client_id(body.get("client_id"))
    return web.json_response({"deleted": await delete_client(ingest, client_id, "admin")})


async def erasures(request: web.Request) -> web.Response:
    ingest = request.app[INGEST]
    check_admin(request)
    rows = await ingest.db.run(ingest.db.storage.erasure_log, 50)
    return web.json_response({"erasures": rows}, headers={"Cache-Control": "no-store"})


async def request_erasure(request: web.Request) -> web.Response:
    """Erase the records of one user (the keyed hash the server's records carry), received up to now."""
    ingest = request.app[INGEST]
    check_admin(request)
    usage = 'send {"user_hash": "<the 64 hexadecimal digits of the user\'s keyed hash>"}'
    try:
        body = parse_json(await read_body(request))
    except ValueError:
        raise BadRequest("Invalid JSON", usage) from None
    now = datetime.now(UTC)
    try:
        erasure = Erasure.parse({"user_id": body.get("user_hash"), "erased_at": now.isoformat()})
    except (ValueError, AttributeError):
        raise BadRequest("Invalid user hash", usage) from None
    await ingest.db.run(ingest.db.storage.request_erasure, erasure.user_hash, now, "admin", now)
    applied = await apply_pending(ingest)
    log.info("erasure_requested", via="admin")
    return web.json_response({"erased": _totals(applied.values())})


def _totals(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    totals = {"records": 0, "archives_rewritten": 0, "archives_removed": 0}
    for each in counts:
        for key, value in each.items():
            totals[key] += value
    return totals


admin_page = static_page(
    "ingest.web", "admin", sign_in("lightspeed-ingest", "the ingest's admin key"), check_admin, ("insights.js",)
)
