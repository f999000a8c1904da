"""The OpenAPI 3.1 document, built from the route table and the pydantic bodies."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from lightspeed_common.telemetry_schema import MODEL_NAME
from lightspeed_common.version import VERSION

if TYPE_CHECKING:
    from lightspeed.api.route import Route

REF = "#/components/schemas/{model}"


SSE_EXAMPLE = (
    'data: {"event": "start", "data": {"conversation_id": "123e4567-e89b-12d3-a456-426614174000", '
    '"request_id": "b0f1c2d3e4f5a6b7"}}\n\n'
    'data: {"event": "token", "data": {"id": 0, "token": "Hello"}}\n\n'
    'data: {"event": "turn_complete", "data": {"id": 1, "token": "Hello"}}\n\n'
    'data: {"event": "end", "data": {"referenced_documents": [], "truncated": null, "input_tokens": 5, '
    '"output_tokens": 1}, "available_quotas": {}}\n\n'
)


@functools.cache
def _model_schema(kind: type[BaseModel]) -> dict[str, Any]:
    """A body's JSON schema, made once per process: pydantic takes milliseconds each time, and the document
    names most bodies many times (every route answers 401, 403, 500 ...). Read-only: `_content` copies it."""
    return kind.model_json_schema(ref_template=REF)


def _content(kind: type[BaseModel] | str | tuple[str, ...], schemas: dict[str, Any]) -> dict[str, Any]:
    if isinstance(kind, str | tuple):
        kinds = (kind,) if isinstance(kind, str) else kind
        return {k: {"schema": {"type": "object" if k == "application/json" else "string"}} for k in kinds}
    schema = copy.deepcopy(_model_schema(kind))
    schemas.update(schema.pop("$defs", {}))
    schemas[kind.__name__] = schema
    ref = {"$ref": REF.format(model=kind.__name__)}
    if getattr(kind, "media_type", None) == "text/event-stream":
        # A stream of events: the body is text; each event is one item (OpenAPI 3.2's itemSchema), whose
        # `data` is a frame as JSON.
        event = {
            "type": "object",
            "required": ["data"],
            "properties": {"data": {"type": "string", "contentMediaType": "application/json", "contentSchema": ref}},
        }
        return {
            "text/event-stream": {"schema": {"type": "string"}, "itemSchema": event, "example": SSE_EXAMPLE},
            "text/plain": {"schema": {"type": "string"}},
        }
    return {"application/json": {"schema": ref}}


def _response(
    status: int, kind: type[BaseModel] | str | tuple[str, ...] | None, schemas: dict[str, Any]
) -> dict[str, Any]:
    if kind is None:  # no body, so no content type either (204)
        return {"description": str(status)}
    return {"description": str(status), "content": _content(kind, schemas)}


_PARAMETER = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_PARAMETER_SCHEMAS: dict[str, dict[str, Any]] = {
    "conversation_id": {"type": "string", "format": "uuid"},
    "model_name": {"type": "string", "pattern": f"^{MODEL_NAME.pattern}$", "not": {"const": "active"}},
}


def _path_parameter(name: str) -> dict[str, Any]:
    schema = _PARAMETER_SCHEMAS.get(name, {"type": "string"})
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _operation_id(route: Route) -> str:
    path = _PARAMETER.sub(r"\1", route.path)
    return f"{route.method.lower()}_" + path.strip("/").replace("/", "_").replace(".", "_").replace("-", "_")


def build_openapi(routes: Sequence[Route]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": _operation_id(route),
            "responses": {str(status): _response(status, kind, schemas) for status, kind in route.responses.items()},
        }
        parameters = _PARAMETER.findall(route.path)
        if parameters:
            operation["parameters"] = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": _PARAMETER_SCHEMAS.get(name, {"type": "string"}),
                }
                for name in parameters
            ]
        operation.setdefault("parameters", []).extend(
            {"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "string"}}
            for name, text in route.query.items()
        )
        if not operation["parameters"]:
            del operation["parameters"]
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": _content(route.body, schemas)}
        if route.authenticated:
            operation["security"] = [{"bearer": []}, {}]
            # The action access rules grant for this route (docs/auth.md).
            operation["x-action"] = route.action.value if route.action is not None else None
        paths.setdefault(_PARAMETER.sub(r"{\1}", route.path), {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "lightspeed", "version": VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
