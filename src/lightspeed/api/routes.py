"""The route table: one entry per route drives both the router and /openapi.json."""

from __future__ import annotations

from aiohttp import web

from lightspeed.api import catalog_payloads as catp
from lightspeed.api import conversation_payloads as cp
from lightspeed.api import payloads as p
from lightspeed.api import query_payloads as qp
from lightspeed.api.handlers import catalog, conversations, feedback, query, service
from lightspeed.api.own_routes import OWN_ROUTES
from lightspeed.api.route import ANSWER_ERRORS, AUTH_ERRORS, CONVERSATION_ERRORS, ERRORS, Route, guarded
from lightspeed_common.config_auth import Action

_STACK_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/conversations",
        conversations.list_v1,
        "The caller's conversations",
        responses={200: cp.ConversationsListResponse, **ERRORS},
        action=Action.LIST_CONVERSATIONS,
    ),
    Route(
        "GET",
        "/v1/conversations/{conversation_id}",
        conversations.get_conversation,
        "A conversation's history (its owner or an admin)",
        responses={200: cp.ConversationResponse, **CONVERSATION_ERRORS},
        action=Action.GET_CONVERSATION,
    ),
    Route(
        "DELETE",
        "/v1/conversations/{conversation_id}",
        conversations.delete_conversation,
        "Delete a conversation's history (its owner or an admin); transcripts already written stay",
        responses={200: cp.ConversationDeleteResponse, **ERRORS, 400: p.ErrorResponse},
        action=Action.DELETE_CONVERSATION,
    ),
    Route(
        "PUT",
        "/v1/conversations/{conversation_id}",
        conversations.update_conversation,
        "Set a conversation's topic summary (its owner or an admin)",
        cp.ConversationUpdateRequest,
        {200: cp.ConversationUpdateResponse, **CONVERSATION_ERRORS},
        action=Action.UPDATE_CONVERSATION,
    ),
    Route(
        "GET",
        "/v2/conversations",
        conversations.list_v2,
        "The caller's conversations",
        responses={200: cp.ConversationsListResponseV2, **ERRORS},
        action=Action.LIST_CONVERSATIONS,
    ),
    Route(
        "GET",
        "/v2/conversations/{conversation_id}",
        conversations.get_conversation,
        "A conversation's history (its owner or an admin)",
        responses={200: cp.ConversationResponse, **CONVERSATION_ERRORS},
        action=Action.GET_CONVERSATION,
    ),
    Route(
        "DELETE",
        "/v2/conversations/{conversation_id}",
        conversations.delete_conversation,
        "Delete a conversation's history (its owner or an admin); transcripts already written stay",
        responses={200: cp.ConversationDeleteResponse, **ERRORS, 400: p.ErrorResponse},
        action=Action.DELETE_CONVERSATION,
    ),
    Route(
        "PUT",
        "/v2/conversations/{conversation_id}",
        conversations.update_conversation,
        "Set a conversation's topic summary (its owner or an admin)",
        cp.ConversationUpdateRequest,
        {200: cp.ConversationUpdateResponse, **CONVERSATION_ERRORS},
        action=Action.UPDATE_CONVERSATION,
    ),
    Route(
        "POST",
        "/v1/query",
        query.query,
        "Answer a question",
        qp.QueryRequest,
        {200: qp.QueryResponse, **ANSWER_ERRORS},
        action=Action.QUERY,
    ),
    Route(
        "POST",
        "/v1/streaming_query",
        query.streaming_query,
        "Answer a question as server-sent events (start, token, turn_complete, end, error)",
        qp.QueryRequest,
        {200: qp.StreamFrame, **ANSWER_ERRORS},
        action=Action.STREAMING_QUERY,
    ),
    Route(
        "POST",
        "/v1/streaming_query/interrupt",
        query.interrupt,
        "Stop the caller's stream that is running: the stream ends with end (truncated true)",
        catp.StreamingInterruptRequest,
        {200: catp.StreamingInterruptResponse, **ERRORS, 404: p.ErrorResponse},
        action=Action.STREAMING_QUERY,
    ),
    Route(
        "GET",
        "/v1/config",
        catalog.configuration,
        "The configuration in lightspeed-stack's shape, secrets masked (admin)",
        responses={200: catp.ConfigurationResponse, **AUTH_ERRORS},
        action=Action.GET_CONFIG,
    ),
    Route(
        "GET",
        "/v1/providers",
        catalog.providers,
        "The answer provider and the embedding provider, by API",
        responses={200: catp.ProvidersListResponse, **AUTH_ERRORS},
        action=Action.LIST_PROVIDERS,
    ),
    Route(
        "GET",
        "/v1/providers/{provider_id}",
        catalog.provider,
        "A provider's type, settings (secrets masked) and health",
        responses={200: catp.ProviderResponse, **AUTH_ERRORS, 404: p.ErrorResponse},
        action=Action.GET_PROVIDER,
    ),
    Route(
        "GET",
        "/v1/shields",
        catalog.shields,
        "The shields guarding the model: none",
        responses={200: catp.ShieldsResponse, **AUTH_ERRORS},
        action=Action.GET_SHIELDS,
    ),
    Route(
        "GET",
        "/v1/tools",
        catalog.tools,
        "The tools the model may call: none",
        responses={200: catp.ToolsResponse, **AUTH_ERRORS},
        action=Action.GET_TOOLS,
    ),
    Route(
        "POST",
        "/v1/feedback",
        feedback.post_feedback,
        "Store feedback on an answer",
        p.FeedbackRequest,
        {
            200: p.FeedbackResponse,
            **ERRORS,
            404: p.ErrorResponse,
            413: p.ErrorResponse,
            500: p.ErrorResponse,
        },
        action=Action.FEEDBACK,
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
        {200: p.FeedbackStatusUpdateResponse, **ERRORS, 409: p.ErrorResponse},
        action=Action.MANAGE_FEEDBACK,
    ),
    Route(
        "GET",
        "/v1/models",
        service.models,
        "The answer models (llm) and the embedding model (embedding) this server offers",
        responses={200: p.ModelsResponse, 401: p.ErrorResponse, 403: p.ErrorResponse},
        query={"model_type": "Only models of this type: llm or embedding (another type: none)"},
        action=Action.GET_MODELS,
    ),
)
_SERVICE_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/",
        service.root,
        "A page naming the service",
        responses={200: "text/html", **AUTH_ERRORS},
        action=Action.INFO,
    ),
    Route(
        "POST",
        "/authorized",
        service.authorized,
        "Who the credentials say the caller is",
        responses={200: p.AuthorizedResponse, **AUTH_ERRORS},
    ),
    Route(
        "GET",
        "/v1/info",
        service.info,
        "The service's name and version",
        responses={200: p.InfoResponse, **AUTH_ERRORS},
        action=Action.INFO,
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
ROUTES: tuple[Route, ...] = (*_STACK_ROUTES, *OWN_ROUTES, *_SERVICE_ROUTES)


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, guarded(route))
