"""The OpenAPI 3.1 document, built from the route table and the pydantic bodies."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from lightspeed import __version__

if TYPE_CHECKING:
    from lightspeed.routes import Route

REF = "#/components/schemas/{model}"


def _content(kind: type[BaseModel] | str, schemas: dict[str, Any]) -> dict[str, Any]:
    if isinstance(kind, str):
        return {kind: {"schema": {"type": "string"}}}
    schema = kind.model_json_schema(ref_template=REF)
    schemas.update(schema.pop("$defs", {}))
    schemas[kind.__name__] = schema
    return {"application/json": {"schema": {"$ref": REF.format(model=kind.__name__)}}}


_PARAMETER = re.compile(r"\{(\w+)(?::[^}]*)?\}")


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
            "responses": {
                str(status): {"description": str(status), "content": _content(kind, schemas)}
                for status, kind in route.responses.items()
            },
        }
        parameters = _PARAMETER.findall(route.path)
        if parameters:
            operation["parameters"] = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in parameters
            ]
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": _content(route.body, schemas)}
        if route.authenticated:
            operation["security"] = [{"bearer": []}, {}]
        paths.setdefault(_PARAMETER.sub(r"{\1}", route.path), {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "lightspeed", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
