"""Every live response agrees with our own /openapi.json: its status is documented for the operation, its
content type is one the document lists (none for a 204), and its body validates against the schema (for
/v1/streaming_query: every frame against the item schema).

The scenarios reach each route of the server, with successes and the usual failures (no credential, a
user where an admin is needed, bad bodies, unknown ids, conflicts).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from tests.conftest import ClientFactory, ConfigFactory
from tests.registry import Registry, fast_telemetry

USER, ADMIN = "user-key-0123456789", "admin-key-0123456789"
OTHER_CONVERSATION = "123e4567-e89b-12d3-a456-426614174000"


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"admin:{key}".encode()).decode()}


# (method, path, who, json body or None); who is None, "user" or "admin" (a Bearer key), or "basic" (admin key).
SCENARIOS: list[tuple[str, str, str | None, Any]] = [
    ("GET", "/liveness", None, None),
    ("GET", "/readiness", None, None),
    ("GET", "/metrics", None, None),
    ("GET", "/openapi.json", None, None),
    ("GET", "/v1/models", None, None),
    ("POST", "/v1/query", "user", {"query": "How do I start the server?"}),
    ("POST", "/v1/query", None, {"query": "How do I start the server?"}),
    ("POST", "/v1/query", "user", {"query": ""}),
    ("POST", "/v1/query", "user", {"query": "q", "provider": "local"}),
    ("POST", "/v1/query", "user", {"query": "q", "conversation_id": "not-a-uuid"}),
    ("POST", "/v1/query", "user", {"query": "q", "conversation_id": OTHER_CONVERSATION}),
    ("POST", "/v1/streaming_query", "user", {"query": "How do I start the server?"}),
    ("POST", "/v1/streaming_query", "user", {"query": "q", "media_type": "text/plain"}),
    ("POST", "/v1/streaming_query", "user", {}),
    ("POST", "/v1/feedback", "user", "FEEDBACK"),
    (
        "POST",
        "/v1/feedback",
        "user",
        {"conversation_id": OTHER_CONVERSATION, "user_question": "q", "llm_response": "a"},
    ),
    ("POST", "/v1/feedback", None, {}),
    ("POST", "/v1/feedback", "user", {"conversation_id": "x"}),
    ("GET", "/v1/feedback/status", None, None),
    ("PUT", "/v1/feedback/status", "admin", {"status": True}),
    ("PUT", "/v1/feedback/status", "user", {"status": True}),
    ("PUT", "/v1/feedback/status", "admin", {"status": "yes"}),
    ("GET", "/v1/embedding-models", "admin", None),
    ("GET", "/v1/embedding-models", "user", None),
    ("POST", "/v1/embedding-models", "admin", {"model_name": "/etc/passwd", "model_source": "sentence-transformers"}),
    ("POST", "/v1/embedding-models", "admin", {"model_name": "acme/nowhere", "model_source": "sentence-transformers"}),
    ("PUT", "/v1/embedding-models/active", "admin", {"model_name": "not-registered"}),
    ("PUT", "/v1/embedding-models/active", "admin", {}),
    ("DELETE", "/v1/embedding-models/not-registered", "admin", None),
    ("DELETE", "/v1/embedding-models/active", "admin", None),
    ("GET", "/v1/telemetry", "admin", None),
    ("GET", "/v1/telemetry/consent", "user", None),
    ("PUT", "/v1/telemetry", "admin", {"enabled": True, "consent_version": "an-old-version"}),
    ("PUT", "/v1/telemetry", "admin", "ENABLE"),
    ("GET", "/v1/telemetry/queue", "admin", None),
    ("POST", "/v1/telemetry/send", "admin", None),
    ("POST", "/v1/telemetry/deletion-request", "admin", None),
    ("DELETE", "/v1/telemetry/queue", "admin", None),
    ("PUT", "/v1/telemetry", "admin", {"enabled": False}),
    ("GET", "/settings", "basic", None),
    ("GET", "/settings", None, None),
    ("GET", "/settings", "user", None),
    ("GET", "/settings/settings.js", "basic", None),
    ("GET", "/settings/no-such-asset.js", "basic", None),
    ("GET", "/v1/conversations", "user", None),
    ("GET", "/", "user", None),
    ("GET", "/", None, None),
    ("POST", "/authorized", "user", None),
    ("POST", "/authorized", None, None),
    ("GET", "/v1/info", "admin", None),
    ("GET", "/v2/conversations", "user", None),
    ("GET", "/v1/conversations/{CID}", "user", None),
    ("GET", "/v2/conversations/{CID}", "admin", None),
    ("GET", "/v1/conversations/{CID}", None, None),
    ("GET", "/v1/conversations/not-a-uuid", "user", None),
    ("GET", "/v2/conversations/0f3b8e0c-6a51-4e0e-9c39-5d1f8e7a2b10", "user", None),
    ("PUT", "/v1/conversations/{CID}", "user", {"topic_summary": "Greetings"}),
    ("PUT", "/v2/conversations/{CID}", "user", {"topic_summary": ""}),
    ("PUT", "/v2/conversations/0f3b8e0c-6a51-4e0e-9c39-5d1f8e7a2b10", "user", {"topic_summary": "x"}),
    ("DELETE", "/v2/conversations/0f3b8e0c-6a51-4e0e-9c39-5d1f8e7a2b10", "user", None),
    ("DELETE", "/v1/conversations/{CID}", "user", None),
    ("POST", "/v1/streaming_query/interrupt", "user", {"request_id": OTHER_CONVERSATION}),
    ("POST", "/v1/streaming_query/interrupt", "user", {}),
    ("GET", "/v1/config", "admin", None),
    ("GET", "/v1/config", "user", None),
    ("GET", "/v1/providers", "user", None),
    ("GET", "/v1/providers/local", "user", None),
    ("GET", "/v1/providers/nope", "user", None),
    ("GET", "/v1/shields", "user", None),
    ("GET", "/v1/tools", None, None),
    ("GET", "/v1/audit", "admin", None),
    ("GET", "/v1/users/me/data", "user", None),
    ("GET", "/v1/users/someone/data", "admin", None),
    ("GET", "/v1/users/someone/data", "user", None),
    ("DELETE", "/v1/users/someone/data", "user", None),
    ("DELETE", "/v1/users/someone/data", "admin", None),
    ("DELETE", "/v1/users/me/data", "user", None),
]


def operation_for(document: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, Any]]:
    for template, operations in document["paths"].items():
        pattern = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+(?:/[^/]+)*", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            return template, operations[method.lower()]
    raise AssertionError(f"{method} {path} is not in /openapi.json")


def validate(document: dict[str, Any], schema: dict[str, Any], value: Any) -> list[str]:
    root = {**schema, "components": document["components"]}
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft202012Validator(root).iter_errors(value)
    ]


def check(document: dict[str, Any], method: str, path: str, status: int, content_type: str, body: bytes) -> list[str]:
    """What in this response disagrees with the document (empty when it agrees)."""
    template, operation = operation_for(document, method, path)
    where = f"{method} {template} {status}"
    documented = operation["responses"].get(str(status))
    if documented is None:
        return [f"{where}: status not documented"]
    content = documented.get("content")
    if content is None:
        return [] if not body and not content_type else [f"{where}: documented without a body, got {content_type}"]
    if content_type not in content:
        return [f"{where}: {content_type} is not among {sorted(content)}"]
    media = content[content_type]
    if content_type == "application/json":
        return [f"{where}: {problem}" for problem in validate(document, media["schema"], json.loads(body))]
    if content_type == "text/event-stream":
        frames = [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]
        frame_schema = media["itemSchema"]["properties"]["data"]["contentSchema"]
        problems = [p for frame in frames for p in validate(document, frame_schema, frame)]
        return [f"{where}: {problem}" for problem in problems] or ([] if frames else [f"{where}: no frames"])
    return []


@pytest.fixture
async def live(make_client: ClientFactory, make_config: ConfigFactory, registry: Registry, tmp_path: Any) -> Any:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        yaml.safe_dump(
            [{"key": USER, "user_id": "alice", "role": "user"}, {"key": ADMIN, "user_id": "op", "role": "admin"}]
        )
    )
    config = make_config(
        authentication={"module": "api-key", "api_key": {"keys_file": str(keys)}},
        telemetry=fast_telemetry(registry.url, first_send_delay_seconds=600),
    )
    return await make_client(config)


async def test_live_responses_agree_with_the_openapi_document(live: Any) -> None:
    document = await (await live.get("/openapi.json")).json()
    conversation = (await (await live.post("/v1/query", json={"query": "hi"}, headers=bearer(USER))).json())[
        "conversation_id"
    ]
    consent = await (await live.get("/v1/telemetry/consent", headers=bearer(USER))).json()
    special = {
        "FEEDBACK": {"conversation_id": conversation, "user_question": "q", "llm_response": "a", "sentiment": 1},
        "ENABLE": {"enabled": True, "consent_version": consent["version"]},
    }
    problems: list[str] = []
    seen: set[tuple[str, str, int]] = set()
    for method, template_path, who, body in SCENARIOS:
        headers = basic(ADMIN) if who == "basic" else bearer({"user": USER, "admin": ADMIN}.get(who or ""))
        payload = special.get(body, body) if isinstance(body, str) else body
        path = template_path.replace("{CID}", conversation)
        resp = await live.request(method, path, json=payload, headers=headers)
        raw = await resp.read()
        content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        problems += check(document, method, path, resp.status, content_type, raw)
        seen.add((method, operation_for(document, method, path)[0], resp.status))
    assert problems == [], "\n".join(p[:300] for p in problems)
    exercised = {(method, template) for method, template, _ in seen}
    documented = {(m.upper(), t) for t, operations in document["paths"].items() for m in operations}
    assert documented - exercised == set()
    assert {status for _, _, status in seen} >= {200, 201, 204, 401, 403, 404, 409, 422} - {201, 204}


async def test_delete_active_is_not_a_model_name(live: Any) -> None:
    """DELETE /v1/embedding-models/active is 405 (that resource takes PUT), not 'no model named active'."""
    resp = await live.delete("/v1/embedding-models/active", headers=bearer(ADMIN))
    assert resp.status == 405
    assert resp.headers["Allow"] == "PUT"
