"""lightspeed-ingest's /openapi.json: every route, what it takes, every answer it gives.

Written out, not derived: the ingest's bodies are a multipart archive, a JSON array checked event by
event, and small objects; tests/common/test_schemathesis.py sends generated requests against this document.
"""

from __future__ import annotations

from typing import Any

from lightspeed_common.telemetry_schema import ModelRegistrationEvent
from lightspeed_common.version import VERSION

ERROR = {"$ref": "#/components/schemas/Error"}
ADMIN: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}]
ERROR_TEXTS = {
    400: "the request is malformed; detail.cause says how",
    401: "no credentials, or a key that is not printable ASCII",
    403: "a wrong key, or none configured for this purpose",
    404: "no such resource; detail.cause names those there are",
    408: "the body stopped arriving, or arrives too slowly",
    413: "the body, or the number of events in it, is over the limit",
    415: "not an archive of an allowed service",
    421: "a Host this ingest does not answer for",
    429: "too many requests; wait Retry-After seconds",
    503: "the database cannot be reached, or too many uploads at once; retry after Retry-After",
    507: "the disk is full; retry later",
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "type": "object",
            "required": ["response", "cause"],
            "properties": {"response": {"type": "string"}, "cause": {"type": "string"}},
        },
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(media_type: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def _object(*required: str) -> dict[str, Any]:
    return {"type": "object", "required": list(required)}


def _operation(summary: str, ok: dict[str, Any], errors: tuple[int, ...] = (), **extra: Any) -> dict[str, Any]:
    failed = {str(status): _json(ERROR, ERROR_TEXTS[status]) for status in (*errors, 421)}
    return {"summary": summary, "responses": {**ok, **failed}, **extra}


def _body(media_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {media_type: {"schema": schema}}}


def _upload_paths() -> dict[str, Any]:
    archive = {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}, "metadata": {"type": "string"}},
    }
    request_id = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
    upload = _operation(
        "Receive a batch of records (tar.gz), as console.redhat.com's ingress does",
        {"202": _json(_object("request_id", "upload"), "stored (or stored before: upload.duplicate_request)")},
        (400, 401, 403, 408, 413, 415, 503, 507),
        security=[{"bearer": []}],
        parameters=[{"name": "x-rh-insights-request-id", "in": "header", "required": False, "schema": request_id}],
        requestBody={
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": archive,
                    "encoding": {"file": {"contentType": "application/vnd.redhat.lightspeed.periodic+tar"}},
                }
            },
        },
    )
    return {"/api/ingress/v1/upload": {"post": upload}}


def _telemetry_paths() -> dict[str, Any]:
    events = {"type": "array", "items": {"$ref": "#/components/schemas/ModelRegistrationEvent"}}
    counted = _object("accepted", "rejected", "duplicates", "capped", "results")
    client_id = {"name": "client_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
    return {
        "/api/v1/telemetry": {
            "post": _operation(
                "Count model_registration events (each is checked on its own)",
                {"200": _json(counted, "each event's outcome: accepted, duplicate, capped or rejected")},
                (400, 401, 403, 408, 413, 429, 503),
                requestBody=_body("application/json", events),
            )
        },
        "/api/v1/telemetry/clients/{client_id}": {
            "delete": _operation(
                "Forget an installation's contributions (knowing its random client id is the proof)",
                {"200": _json(_object("deleted"), "what was removed")},
                (400, 401, 403, 429, 503),
                parameters=[client_id],
            )
        },
    }


def _admin_paths() -> dict[str, Any]:
    limit = {"type": "integer", "minimum": 1, "maximum": 1000}
    client_id = {"type": "string", "format": "uuid"}
    deletion = {"type": "object", "required": ["client_id"], "properties": {"client_id": client_id}}
    admin_errors = (401, 403, 429, 503)
    return {
        "/api/admin/v1/models": {
            "get": _operation(
                "Embedding models reported by telemetry, with their counts",
                {"200": _json(_object("models", "retention_days"), "the models")},
                admin_errors,
                security=ADMIN,
            )
        },
        "/api/admin/v1/uploads": {
            "get": _operation(
                "Recent uploads and the totals",
                {"200": _json(_object("uploads", "totals", "retention_days"), "the uploads")},
                (400, *admin_errors),
                security=ADMIN,
                parameters=[{"name": "limit", "in": "query", "required": False, "schema": limit}],
            )
        },
        "/api/admin/v1/deletions": {
            "get": _operation(
                "The deletions done, newest first",
                {"200": _json(_object("deletions"), "the deletion log")},
                admin_errors,
                security=ADMIN,
            ),
            "post": _operation(
                "Delete one installation's contributions",
                {"200": _json(_object("deleted"), "what was removed")},
                (400, 408, 413, *admin_errors),
                security=ADMIN,
                requestBody=_body("application/json", deletion),
            ),
        },
        "/admin": {
            "get": _operation(
                "The admin page (Basic auth: any user name, the admin key as password)",
                {"200": _text("text/html", "the page")},
                (401, 403, 429),
                security=ADMIN,
            )
        },
    }


def _erasure_paths() -> dict[str, Any]:
    user_hash = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    erasure = {"type": "object", "required": ["user_hash"], "properties": {"user_hash": user_hash}}
    admin_errors = (401, 403, 429, 503)
    return {
        "/api/admin/v1/erasures": {
            "get": _operation(
                "The user erasures received, newest first (none names the user)",
                {"200": _json(_object("erasures"), "the erasure log")},
                admin_errors,
                security=ADMIN,
            ),
            "post": _operation(
                "Erase one user's records (by the keyed user hash the records carry) from every archive",
                {"200": _json(_object("erased"), "what was removed")},
                (400, 408, 413, *admin_errors),
                security=ADMIN,
                requestBody=_body("application/json", erasure),
            ),
        },
    }


def _feedback_paths() -> dict[str, Any]:
    text = {"type": "string"}
    day = {"type": "string", "format": "date"}
    schemas = {
        "since": (day, "first day, YYYY-MM-DD"),
        "until": (day, "last day, YYYY-MM-DD"),
        "sentiment": ({"type": "string", "enum": ["1", "-1"]}, "1 or -1"),
        "category": ({"type": "string", "pattern": "^[a-z0-9_]{1,64}$"}, "one of the record's categories"),
        "q": ({"type": "string", "maxLength": 200}, "text in user_feedback, any case"),
        "limit": ({"type": "integer", "minimum": 1, "maximum": 500}, "records in a page (json)"),
        "after": ({"type": "string", "pattern": "^[0-9T:Z-]{0,25},[0-9a-f]{64}$"}, "the previous page's next"),
        "format": ({"type": "string", "enum": ["json", "csv", "jsonl"]}, "a page, or the whole set streamed"),
    }
    parameters = [
        {"name": name, "in": "query", "required": False, "schema": schema, "description": about}
        for name, (schema, about) in schemas.items()
    ]
    page = _object("feedback", "next")
    content = {
        "application/json": {"schema": page},
        "text/csv": {"schema": text},
        "application/x-ndjson": {"schema": text},
    }
    conversation = {"name": "conversation_id", "in": "path", "required": True, "schema": text}
    return {
        "/api/admin/v1/conversations/{conversation_id}/transcripts": {
            "get": _operation(
                "The conversation's transcripts the ingest holds, read from their archives, oldest first",
                {"200": _json(_object("conversation_id", "transcripts"), "the transcripts")},
                (401, 403, 429, 503),
                security=ADMIN,
                parameters=[conversation],
            )
        },
        "/api/admin/v1/feedback": {
            "get": _operation(
                "The feedback received, filtered: a page, or the whole set as CSV or JSON Lines",
                {"200": {"description": "the feedback", "content": content}},
                (400, 401, 403, 429, 503),
                security=ADMIN,
                parameters=parameters,
            )
        },
    }


def _insights_paths() -> dict[str, Any]:
    day = {"type": "string", "format": "date"}
    parameters = [
        {"name": "since", "in": "query", "required": False, "schema": day, "description": "first day"},
        {"name": "until", "in": "query", "required": False, "schema": day, "description": "last day (today)"},
        {
            "name": "by",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["day", "week"]},
            "description": "per day (the default up to 92 days) or per week",
        },
    ]
    chart = {"name": "chart", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[a-z]+$"}}
    width = {
        "name": "width",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 280, "maximum": 1600},
        "description": "pixels; the chart is laid out for it (720)",
    }
    errors = (400, 401, 403, 429, 503)
    return {
        "/api/admin/v1/insights": {
            "get": _operation(
                "Records, uploads, feedback, conversations and telemetry per day or week: each chart's numbers",
                {"200": _json(_object("since", "until", "by", "charts", "refusals"), "the charts")},
                errors,
                security=ADMIN,
                parameters=parameters,
            )
        },
        "/api/admin/v1/insights/{chart}.svg": {
            "get": _operation(
                "One chart of the insights, drawn as SVG",
                {"200": _text("image/svg+xml", "the chart")},
                (404, *errors),
                security=ADMIN,
                parameters=[chart, width, *parameters],
            )
        },
    }


def _service_paths() -> dict[str, Any]:
    readiness = _object("ready", "reason")
    return {
        "/liveness": {"get": _operation("The process answers", {"200": _json(_object("alive"), "alive")})},
        "/readiness": {
            "get": _operation(
                "Ready while the database answers (from a background check)",
                {"200": _json(readiness, "ready"), "503": _json(readiness, "not ready: the reason; Retry-After")},
            )
        },
        "/metrics": {"get": _operation("Prometheus metrics", {"200": _text("text/plain", "the metrics")})},
        "/openapi.json": {"get": _operation("This document", {"200": _json({"type": "object"}, "OpenAPI 3.1")})},
    }


def build_openapi() -> dict[str, Any]:
    event = ModelRegistrationEvent.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = {
        "Error": ERROR_SCHEMA,
        "ModelRegistrationEvent": {k: v for k, v in event.items() if k != "$defs"},
        **event.get("$defs", {}),
    }
    schemes = {"bearer": {"type": "http", "scheme": "bearer"}, "basic": {"type": "http", "scheme": "basic"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "lightspeed-ingest", "version": VERSION},
        "paths": {
            **_upload_paths(),
            **_telemetry_paths(),
            **_admin_paths(),
            **_erasure_paths(),
            **_feedback_paths(),
            **_insights_paths(),
            **_service_paths(),
        },
        "components": {"schemas": schemas, "securitySchemes": schemes},
    }
