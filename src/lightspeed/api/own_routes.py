"""The routes of this server's own (lightspeed-stack has none of them): embedding models, telemetry, /settings."""

from __future__ import annotations

from lightspeed.api import payloads as p
from lightspeed.api import settings_payloads as sp
from lightspeed.api.handlers import models, settings_page, telemetry, users
from lightspeed.api.route import ERRORS, Route
from lightspeed_common.config_auth import Action

OWN_ROUTES: tuple[Route, ...] = (
    Route(
        "DELETE",
        "/v1/users/me/data",
        users.erase_me,
        "Erase the caller's conversations and records on this side; the collector and the ingest follow",
        responses={200: sp.UserDataErased, **ERRORS},
    ),
    Route(
        "DELETE",
        "/v1/users/{user_id}/data",
        users.erase_user,
        "Erase a user's conversations and records on this side (admin); the collector and the ingest follow",
        responses={200: sp.UserDataErased, **ERRORS},
        action=Action.ADMIN,
    ),
    Route(
        "GET",
        "/v1/embedding-models",
        models.list_models,
        "Registered embedding models, the active one and any activation in progress (admin)",
        responses={200: sp.EmbeddingModelList, **ERRORS},
        action=Action.GET_EMBEDDING_MODELS,
    ),
    Route(
        "POST",
        "/v1/embedding-models",
        models.register_model,
        "Register an embedding model: load it, run a test inference, store its metadata (admin)",
        sp.EmbeddingModelRegistration,
        {201: sp.EmbeddingModelRegistered, **ERRORS, 413: p.ErrorResponse, 422: sp.RegistrationRefused},
        action=Action.MANAGE_EMBEDDING_MODELS,
    ),
    Route(
        "PUT",
        "/v1/embedding-models/active",
        models.activate_model,
        "Switch retrieval to a registered model; the index is rebuilt in the background (admin)",
        sp.EmbeddingModelActivation,
        {202: sp.ActivationStarted, **ERRORS, 404: p.ErrorResponse, 409: p.ErrorResponse},
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
        responses={204: None, **ERRORS, 404: p.ErrorResponse, 409: p.ErrorResponse},
        action=Action.MANAGE_EMBEDDING_MODELS,
    ),
    Route(
        "GET",
        "/v1/telemetry",
        telemetry.get_status,
        "Telemetry settings: enabled, why not, client id, queue size, next send (admin)",
        responses={200: sp.TelemetryStatus, **ERRORS},
        action=Action.GET_TELEMETRY,
    ),
    Route(
        "PUT",
        "/v1/telemetry",
        telemetry.put_status,
        "Enable (with the consent version) or disable telemetry (admin)",
        sp.TelemetryUpdate,
        {200: sp.TelemetryStatus, **ERRORS, 409: p.ErrorResponse},
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
        responses={200: sp.TelemetryQueueView, **ERRORS},
        action=Action.GET_TELEMETRY,
    ),
    Route(
        "DELETE",
        "/v1/telemetry/queue",
        telemetry.purge_queue,
        "Delete every queued event (admin)",
        responses={200: sp.PurgeResult, **ERRORS},
        action=Action.MANAGE_TELEMETRY,
    ),
    Route(
        "POST",
        "/v1/telemetry/send",
        telemetry.send_now,
        "Send the queue now; ?wait=N waits up to N seconds (max 30) for the outcome (admin)",
        responses={200: sp.SendResult, 202: sp.SendResult, **ERRORS, 409: p.ErrorResponse},
        action=Action.MANAGE_TELEMETRY,
    ),
    Route(
        "POST",
        "/v1/telemetry/deletion-request",
        telemetry.request_deletion,
        "Ask the registry to delete every contribution of this installation's client id (admin)",
        responses={
            200: "application/json",
            **ERRORS,
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
)
