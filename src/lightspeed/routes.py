"""The route table: one entry per route drives both the router and /openapi.json."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel

from lightspeed import payloads as p
from lightspeed.handlers import feedback, query, service


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | str] = field(default_factory=dict)
    authenticated: bool = True


_ERRORS: dict[int, type[BaseModel] | str] = {
    401: p.ErrorResponse,
    403: p.ErrorResponse,
    422: p.ValidationErrorResponse,
}
_ANSWER_ERRORS: dict[int, type[BaseModel] | str] = {
    **_ERRORS,
    404: p.ErrorResponse,
    413: p.ErrorResponse,
    502: p.ErrorResponse,
    503: p.ErrorResponse,
}

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/query",
        query.query,
        "Answer a question",
        p.QueryRequest,
        {200: p.QueryResponse, **_ANSWER_ERRORS},
    ),
    Route(
        "POST",
        "/v1/streaming_query",
        query.streaming_query,
        "Answer a question as server-sent events (start, token, turn_complete, end, error)",
        p.QueryRequest,
        {200: "text/event-stream", **_ANSWER_ERRORS},
    ),
    Route(
        "POST",
        "/v1/feedback",
        feedback.post_feedback,
        "Store feedback on an answer",
        p.FeedbackRequest,
        {
            200: p.FeedbackResponse,
            **_ERRORS,
            404: p.ErrorResponse,
            413: p.ErrorResponse,
            500: p.ErrorResponse,
        },
    ),
    Route(
        "GET",
        "/v1/feedback/status",
        feedback.get_feedback_status,
        "Whether feedback is stored",
        responses={200: p.FeedbackStatus},
        authenticated=False,
    ),
    Route(
        "PUT",
        "/v1/feedback/status",
        feedback.put_feedback_status,
        "Turn storing feedback on or off (admin); persists across restarts",
        p.FeedbackStatusUpdate,
        {200: p.FeedbackStatusUpdateResponse, **_ERRORS, 409: p.ErrorResponse},
    ),
    Route(
        "GET",
        "/v1/models",
        service.models,
        "The answer models this server offers",
        responses={200: p.ModelsResponse},
        authenticated=False,
    ),
    Route(
        "GET",
        "/liveness",
        service.liveness,
        "The process is alive",
        responses={200: p.LivenessResponse},
        authenticated=False,
    ),
    Route(
        "GET",
        "/readiness",
        service.readiness,
        "The service can answer and store records",
        responses={200: p.ReadinessResponse, 503: p.ReadinessResponse},
        authenticated=False,
    ),
    Route(
        "GET",
        "/metrics",
        service.metrics,
        "Prometheus metrics",
        responses={200: "text/plain"},
        authenticated=False,
    ),
    Route(
        "GET",
        "/openapi.json",
        service.openapi,
        "This document",
        responses={200: "application/json"},
        authenticated=False,
    ),
)


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
