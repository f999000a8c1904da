"""The route table: one entry per route drives both the router and /openapi.json."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel

from lightspeed.access import forbidden
from lightspeed.api import catalog_payloads as catp
from lightspeed.api import conversation_payloads as cp
from lightspeed.api import payloads as p
from lightspeed.api import query_payloads as qp
from lightspeed.api import settings_payloads as sp
from lightspeed.api.handlers import catalog, conversations, feedback, models, query, service, settings_page, telemetry
from lightspeed.api.state import SERVER, USER
from lightspeed_common.config_auth import Action
from lightspeed_common.errors import Unauthorized

ResponseBody = type[BaseModel] | str | tuple[str, ...] | None


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    # A status's body: a model (JSON), media types (text), or None (no body, e.g. 204).
    responses: dict[int, ResponseBody] = field(default_factory=dict)
    authenticated: bool = True
    # What the caller's roles must allow (lightspeed.access); None on an authenticated route: any caller.
    action: Action | None = None
    # A browser page: without credentials, a Basic challenge instead of the JSON 401.
    challenge: Callable[[], web.Response] | None = None
    # Query parameters: name -> description (all optional strings).
    query: dict[str, str] = field(default_factory=dict)


_ERRORS: dict[int, ResponseBody] = {
    401: p.ErrorResponse,
    403: p.ErrorResponse,
    422: p.UnprocessableResponse,
}
_ANSWER_ERRORS: dict[int, ResponseBody] = {
    **_ERRORS,
    404: p.ErrorResponse,
    413: p.ErrorResponse,
    502: p.ErrorResponse,
    503: p.ErrorResponse,
}

_AUTH_ERRORS: dict[int, ResponseBody] = {401: p.ErrorResponse, 403: p.ErrorResponse}
_CONVERSATION_ERRORS: dict[int, ResponseBody] = {**_ERRORS, 400: p.ErrorResponse, 404: p.ErrorResponse}

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/conversations",
        conversations.list_v1,
        "The caller's conversations",
        responses={200: cp.ConversationsListResponse, **_ERRORS},
        action=Action.LIST_CONVERSATIONS,
    ),
    Route(
        "GET",
        "/v1/conversations/{conversation_id}",
        conversations.get_conversation,
        "A conversation's history (its owner or an admin)",
        responses={200: cp.ConversationResponse, **_CONVERSATION_ERRORS},
        action=Action.GET_CONVERSATION,
    ),
    Route(
        "DELETE",
        "/v1/conversations/{conversation_id}",
        conversations.delete_conversation,
        "Delete a conversation's history (its owner or an admin); transcripts already written stay",
        responses={200: cp.ConversationDeleteResponse, **_ERRORS, 400: p.ErrorResponse},
        action=Action.DELETE_CONVERSATION,
    ),
    Route(
        "PUT",
        "/v1/conversations/{conversation_id}",
        conversations.update_conversation,
        "Set a conversation's topic summary (its owner or an admin)",
        cp.ConversationUpdateRequest,
        {200: cp.ConversationUpdateResponse, **_CONVERSATION_ERRORS},
        action=Action.UPDATE_CONVERSATION,
    ),
    Route(
        "GET",
        "/v2/conversations",
        conversations.list_v2,
        "The caller's conversations",
        responses={200: cp.ConversationsListResponseV2, **_ERRORS},
        action=Action.LIST_CONVERSATIONS,
    ),
    Route(
        "GET",
        "/v2/conversations/{conversation_id}",
        conversations.get_conversation,
        "A conversation's history (its owner or an admin)",
        responses={200: cp.ConversationResponse, **_CONVERSATION_ERRORS},
        action=Action.GET_CONVERSATION,
    ),
    Route(
        "DELETE",
        "/v2/conversations/{conversation_id}",
        conversations.delete_conversation,
        "Delete a conversation's history (its owner or an admin); transcripts already written stay",
        responses={200: cp.ConversationDeleteResponse, **_ERRORS, 400: p.ErrorResponse},
        action=Action.DELETE_CONVERSATION,
    ),
    Route(
        "PUT",
        "/v2/conversations/{conversation_id}",
        conversations.update_conversation,
        "Set a conversation's topic summary (its owner or an admin)",
        cp.ConversationUpdateRequest,
        {200: cp.ConversationUpdateResponse, **_CONVERSATION_ERRORS},
        action=Action.UPDATE_CONVERSATION,
    ),
    Route(
        "POST",
        "/v1/query",
        query.query,
        "Answer a question",
        qp.QueryRequest,
        {200: qp.QueryResponse, **_ANSWER_ERRORS},
        action=Action.QUERY,
    ),
    Route(
        "POST",
        "/v1/streaming_query",
        query.streaming_query,
        "Answer a question as server-sent events (start, token, turn_complete, end, error)",
        qp.QueryRequest,
        {200: qp.StreamFrame, **_ANSWER_ERRORS},
        action=Action.STREAMING_QUERY,
    ),
    Route(
        "POST",
        "/v1/streaming_query/interrupt",
        query.interrupt,
        "Stop the caller's stream that is running: the stream ends with end (truncated true)",
        catp.StreamingInterruptRequest,
        {200: catp.StreamingInterruptResponse, **_ERRORS, 404: p.ErrorResponse},
        action=Action.STREAMING_QUERY,
    ),
    Route(
        "GET",
        "/v1/config",
        catalog.configuration,
        "The configuration in lightspeed-stack's shape, secrets masked (admin)",
        responses={200: catp.ConfigurationResponse, **_AUTH_ERRORS},
        action=Action.GET_CONFIG,
    ),
    Route(
        "GET",
        "/v1/providers",
        catalog.providers,
        "The answer provider and the embedding provider, by API",
        responses={200: catp.ProvidersListResponse, **_AUTH_ERRORS},
        action=Action.LIST_PROVIDERS,
    ),
    Route(
        "GET",
        "/v1/providers/{provider_id}",
        catalog.provider,
        "A provider's type, settings (secrets masked) and health",
        responses={200: catp.ProviderResponse, **_AUTH_ERRORS, 404: p.ErrorResponse},
        action=Action.GET_PROVIDER,
    ),
    Route(
        "GET",
        "/v1/shields",
        catalog.shields,
        "The shields guarding the model: none",
        responses={200: catp.ShieldsResponse, **_AUTH_ERRORS},
        action=Action.GET_SHIELDS,
    ),
    Route(
        "GET",
        "/v1/tools",
        catalog.tools,
        "The tools the model may call: none",
        responses={200: catp.ToolsResponse, **_AUTH_ERRORS},
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
            **_ERRORS,
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
        {200: p.FeedbackStatusUpdateResponse, **_ERRORS, 409: p.ErrorResponse},
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
    Route(
        "GET",
        "/v1/embedding-models",
        models.list_models,
        "Registered embedding models, the active one and any activation in progress (admin)",
        responses={200: sp.EmbeddingModelList, **_ERRORS},
        action=Action.GET_EMBEDDING_MODELS,
    ),
    Route(
        "POST",
        "/v1/embedding-models",
        models.register_model,
        "Register an embedding model: load it, run a test inference, store its metadata (admin)",
        sp.EmbeddingModelRegistration,
        {201: sp.EmbeddingModelRegistered, **_ERRORS, 413: p.ErrorResponse, 422: sp.RegistrationRefused},
        action=Action.MANAGE_EMBEDDING_MODELS,
    ),
    Route(
        "PUT",
        "/v1/embedding-models/active",
        models.activate_model,
        "Switch retrieval to a registered model; the index is rebuilt in the background (admin)",
        sp.EmbeddingModelActivation,
        {202: sp.ActivationStarted, **_ERRORS, 404: p.ErrorResponse, 409: p.ErrorResponse},
        action=Action.MANAGE_EMBEDDING_MODELS,
    ),
    Route(
        "DELETE",
        "/v1/embedding-models/active",
        models.delete_active,
        "Not allowed (405): the active model is switched with PUT, never deleted",
        responses={405: p.ErrorResponse},
        authenticated=False,
    ),
    Route(
        "DELETE",
        # Not `active`: DELETE /v1/embedding-models/active is 405 (that resource takes PUT), not "no such model".
        "/v1/embedding-models/{model_name:(?!active$).+}",
        models.delete_model,
        "Forget a registered model that is not active (admin)",
        responses={204: None, **_ERRORS, 404: p.ErrorResponse, 409: p.ErrorResponse},
        action=Action.MANAGE_EMBEDDING_MODELS,
    ),
    Route(
        "GET",
        "/v1/telemetry",
        telemetry.get_status,
        "Telemetry settings: enabled, why not, client id, queue size, next send (admin)",
        responses={200: sp.TelemetryStatus, **_ERRORS},
        action=Action.GET_TELEMETRY,
    ),
    Route(
        "PUT",
        "/v1/telemetry",
        telemetry.put_status,
        "Enable (with the consent version) or disable telemetry (admin)",
        sp.TelemetryUpdate,
        {200: sp.TelemetryStatus, **_ERRORS, 409: p.ErrorResponse},
        action=Action.MANAGE_TELEMETRY,
    ),
    Route(
        "GET",
        "/v1/telemetry/consent",
        telemetry.get_consent,
        "Exactly what enabling telemetry agrees to: every field, what is never sent, where it goes",
        responses={200: sp.ConsentDocument, 401: p.ErrorResponse},
        action=Action.INFO,
    ),
    Route(
        "GET",
        "/v1/telemetry/queue",
        telemetry.get_queue,
        "The queued events, exactly as they would be sent (admin)",
        responses={200: sp.TelemetryQueueView, **_ERRORS},
        action=Action.GET_TELEMETRY,
    ),
    Route(
        "DELETE",
        "/v1/telemetry/queue",
        telemetry.purge_queue,
        "Delete every queued event (admin)",
        responses={200: sp.PurgeResult, **_ERRORS},
        action=Action.MANAGE_TELEMETRY,
    ),
    Route(
        "POST",
        "/v1/telemetry/send",
        telemetry.send_now,
        "Send the queue now; ?wait=N waits up to N seconds (max 30) for the outcome (admin)",
        responses={200: sp.SendResult, 202: sp.SendResult, **_ERRORS, 409: p.ErrorResponse},
        action=Action.MANAGE_TELEMETRY,
    ),
    Route(
        "POST",
        "/v1/telemetry/deletion-request",
        telemetry.request_deletion,
        "Ask the registry to delete every contribution of this installation's client id (admin)",
        responses={
            200: "application/json",
            **_ERRORS,
            409: p.ErrorResponse,
            502: p.ErrorResponse,
            503: p.ErrorResponse,
        },
        action=Action.MANAGE_TELEMETRY,
    ),
    Route(
        "GET",
        "/settings",
        settings_page.settings_page,
        "The settings page (HTML; Basic auth with an admin key as the password)",
        responses={200: "text/html", 401: "text/html", 403: p.ErrorResponse},
        action=Action.VIEW_SETTINGS,
        challenge=settings_page.challenge,
    ),
    Route(
        "GET",
        "/settings/{asset}",
        settings_page.settings_page,
        "The settings page's script and style sheet",
        responses={200: ("text/javascript", "text/css"), 401: "text/html", 403: p.ErrorResponse, 404: p.ErrorResponse},
        action=Action.VIEW_SETTINGS,
        challenge=settings_page.challenge,
    ),
    Route(
        "GET",
        "/",
        service.root,
        "A page naming the service",
        responses={200: "text/html", **_AUTH_ERRORS},
        action=Action.INFO,
    ),
    Route(
        "POST",
        "/authorized",
        service.authorized,
        "Who the credentials say the caller is",
        responses={200: p.AuthorizedResponse, **_AUTH_ERRORS},
    ),
    Route(
        "GET",
        "/v1/info",
        service.info,
        "The service's name and version",
        responses={200: p.InfoResponse, **_AUTH_ERRORS},
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


def guarded(route: Route) -> Handler:
    """The route's handler behind its authentication and authorization: the caller, known and allowed
    the route's action, is `request[USER]` to the handler."""
    if not route.authenticated:
        return route.handler
    action, handler, challenge = route.action, route.handler, route.challenge

    async def guard(request: web.Request) -> web.StreamResponse:
        try:
            user = await request.app[SERVER].auth(request)
        except Unauthorized:
            if challenge is None:
                raise
            return challenge()
        if action is not None and not user.may(action):
            raise forbidden(user.user_id)
        request[USER] = user
        return await handler(request)

    return guard


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, guarded(route))
