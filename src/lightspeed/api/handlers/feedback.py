"""POST /v1/feedback, GET and PUT /v1/feedback/status."""

from __future__ import annotations

import structlog
from aiohttp import web

from lightspeed.api.handlers.query import check_conversation_owner
from lightspeed.api.keys import AUTH, CONFIG, CONVERSATIONS, HASHER, RECORDS, REDACTOR, SETTINGS
from lightspeed.api.payloads import FeedbackRequest, FeedbackStatusUpdate, parse_body
from lightspeed.auth import require_admin
from lightspeed.records.formats import Feedback
from lightspeed_common.errors import ApiError, Conflict, Forbidden, RecordWriteError
from lightspeed_common.http.middleware import read_body

log = structlog.get_logger(__name__)


async def post_feedback(request: web.Request) -> web.Response:
    app = request.app
    user = app[AUTH](request)
    if not app[SETTINGS].feedback_enabled:
        raise Forbidden("Storing feedback is disabled", "Storing feedback is disabled.")
    body = parse_body(FeedbackRequest, await read_body(request))
    user_hash = app[HASHER](user.user_id)
    await check_conversation_owner(app[CONVERSATIONS], body.conversation_id, user, user_hash)
    # One decision for the three texts together: short ones on the loop, long ones in the worker process.
    question, response, comment = await app[REDACTOR].redact_all(
        [body.user_question, body.llm_response, body.user_feedback or ""]
    )
    feedback = Feedback(
        user_hash=user_hash,
        conversation_id=body.conversation_id,
        user_question=question,
        llm_response=response,
        sentiment=body.sentiment,
        user_feedback=comment if body.user_feedback is not None else None,
        categories=[c.value for c in body.categories] if body.categories else None,
    )
    try:
        path = await app[RECORDS].write_feedback(feedback)
    except RecordWriteError as exc:
        log.error("feedback_write_failed", reason=exc.reason)
        raise ApiError("Failed to store feedback", exc.reason) from exc
    log.debug("record_written", kind="feedback", file=path.name)
    return web.json_response({"response": "feedback received"})


async def get_feedback_status(request: web.Request) -> web.Response:
    enabled = request.app[SETTINGS].feedback_enabled
    return web.json_response({"functionality": "feedback", "status": {"enabled": enabled}})


async def put_feedback_status(request: web.Request) -> web.Response:
    app = request.app
    user = app[AUTH](request)
    require_admin(user)
    body = parse_body(FeedbackStatusUpdate, await read_body(request))
    if body.status and app[CONFIG].user_data_collection.feedback_storage is None:
        raise Conflict(
            "Feedback cannot be enabled",
            "user_data_collection.feedback_storage is not configured",
        )
    change = await app[SETTINGS].set_feedback_enabled(body.status, user.user_id, app[HASHER](user.user_id))
    log.info("feedback_status_changed", previous=change.previous_status, updated=change.updated_status)
    return web.json_response(
        {
            "status": {
                "previous_status": change.previous_status,
                "updated_status": change.updated_status,
                "updated_by": change.updated_by,
                "timestamp": change.timestamp.isoformat(),
            }
        }
    )
