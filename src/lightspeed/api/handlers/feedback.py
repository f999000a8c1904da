"""POST /v1/feedback, GET and PUT /v1/feedback/status: HTTP in, the feedback desk (records/feedback.py), HTTP out."""

from __future__ import annotations

from aiohttp import web

from lightspeed.api.payloads import FeedbackRequest, FeedbackStatusUpdate, parse_body
from lightspeed.api.state import SERVER, USER
from lightspeed.records.formats import GivenFeedback
from lightspeed_common.http.middleware import read_body


async def post_feedback(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    user = request[USER]
    server.feedback.check_enabled()  # 403 before the body is read, as lightspeed-stack answers
    body = parse_body(FeedbackRequest, await read_body(request))
    given = GivenFeedback(
        conversation_id=body.conversation_id,
        user_question=body.user_question,
        llm_response=body.llm_response,
        sentiment=body.sentiment,
        user_feedback=body.user_feedback,
        categories=[c.value for c in body.categories] if body.categories else None,
    )
    await server.feedback.submit(user.user_id, given)
    return web.json_response({"response": "feedback received"})


async def get_feedback_status(request: web.Request) -> web.Response:
    enabled = request.app[SERVER].feedback.enabled
    return web.json_response({"functionality": "feedback", "status": {"enabled": enabled}})


async def put_feedback_status(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    user = request[USER]
    body = parse_body(FeedbackStatusUpdate, await read_body(request))
    change = await server.feedback.set_enabled(body.status, user.user_id)
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
