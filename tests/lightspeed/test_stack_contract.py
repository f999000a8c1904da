"""lightspeed-stack's published contract (its OpenAPI document, 0.6.0rc2, copied beside this file): for every
path in scope, under each auth module we ship, every live response has a status the document lists for the
operation, a content type it lists, and a body that validates against its schema. SSE frames carry the events
and fields of the document's example.

Every status the document lists for an in-scope operation is produced by some scenario below, or named in
NOT_PRODUCED with the reason this server cannot answer it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient

from tests.conftest import ClientFactory, ConfigFactory
from tests.fake_llm import free_port
from tests.lightspeed.test_openapi_conformance import operation_for, validate
from tests.lightspeed.test_query import TrickleProvider

DOCUMENT = json.loads((Path(__file__).parent / "lightspeed-stack-openapi.json").read_text())
# The wire wins over the document: lightspeed-stack's error models list `status_code`, so its schemas require
# it, but its endpoints raise `HTTPException(**response.model_dump())`, which sends `detail` alone. Bodies are
# checked against what its server sends: `detail`, and no `status_code`.
for _schema in DOCUMENT["components"]["schemas"].values():
    if "status_code" in _schema.get("properties", {}):
        _schema["required"] = [name for name in _schema["required"] if name != "status_code"]
        _schema["not"] = {"required": ["status_code"]}
# fmt: off
IN_SCOPE = (
    "/", "/liveness", "/readiness", "/metrics", "/authorized", "/v1/info", "/v1/config", "/v1/models",
    "/v1/providers", "/v1/providers/{provider_id}", "/v1/shields", "/v1/tools", "/v1/query",
    "/v1/streaming_query", "/v1/streaming_query/interrupt", "/v1/feedback", "/v1/feedback/status",
    "/v1/conversations", "/v1/conversations/{conversation_id}", "/v2/conversations",
    "/v2/conversations/{conversation_id}",
)
# fmt: on
SCOPED = {"paths": {p: DOCUMENT["paths"][p] for p in IN_SCOPE}, "components": DOCUMENT["components"]}
MODULES = ("noop", "noop-with-token", "api-key")
KEYS = {"user": "user-key-0123456789", "other": "other-key-0123456789", "admin": "admin-key-0123456789"}
USER_IDS = {"user": "alice", "other": "bob", "admin": "op"}
UNKNOWN = "123e4567-e89b-12d3-a456-426614174000"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()
MAX_BODY = 16 * 1024

# (method, path, status) the document lists that this server never answers, and why.
_NO_K8S = "503 is lightspeed-stack's Kubernetes-API or Llama Stack outage; we call neither"
_NO_CONFIG_500 = "500 is 'configuration not loaded'; this server does not start without its configuration"
_PUBLIC = "we serve probes and metrics without authentication, as lightspeed-stack does by default"
_ANY_USER = "every authenticated user may call it (lightspeed-stack's default authorization rules)"
_ANY_STRING = "the parameter is any string; an unknown value is an empty list or a 404, never a 422"
# fmt: off
NOT_PRODUCED: dict[tuple[str, str, str], str] = {
    **{(m, p, "503"): _NO_K8S for p, ops in SCOPED["paths"].items() for m in ops
       if p not in ("/readiness", "/v1/query", "/v1/streaming_query")},
    **{(m, p, "500"): _NO_CONFIG_500 for p, ops in SCOPED["paths"].items() for m in ops if p != "/v1/feedback"},
    **{("get", p, s): _PUBLIC for p in ("/liveness", "/readiness", "/metrics") for s in ("401", "403")},
    **{(m, p, "403"): _ANY_USER for m, p in [
        ("get", "/"), ("post", "/authorized"), ("get", "/v1/info"), ("get", "/v1/models"),
        ("get", "/v1/providers"), ("get", "/v1/providers/{provider_id}"), ("get", "/v1/shields"),
        ("get", "/v1/tools"), ("post", "/v1/streaming_query/interrupt"), ("get", "/v1/conversations"),
        ("get", "/v2/conversations"),
    ]},
    ("get", "/v1/models", "422"): _ANY_STRING,
    ("get", "/v1/providers/{provider_id}", "422"): _ANY_STRING,
    ("post", "/v1/query", "429"): "no token quotas are configured or enforced here (available_quotas is {})",
    ("post", "/v1/streaming_query", "429"): "no token quotas are configured or enforced here",
    ("post", "/v1/feedback", "500"): "a feedback record that cannot be written: test_feedback's disk-full test",
    **{(m, p, "422"): "a bad id is 400 (lightspeed-stack's own check runs first), the only body is PUT's"
       for p in ("/v1/conversations/{conversation_id}", "/v2/conversations/{conversation_id}")
       for m in ("get", "delete")},
}
# lightspeed-stack answers an unready /readiness with its ReadinessResponse and status 503 (the document's 503
# entry describes only its Kubernetes-auth failure); so do we.
# fmt: on
SCHEMA_OVERRIDES = {("get", "/readiness", 503): {"$ref": "#/components/schemas/ReadinessResponse"}}
# Where the document gives only examples, the schema other operations give the same examples.
BY_STATUS = {401: "UnauthorizedResponse", 403: "ForbiddenResponse", 500: "InternalServerErrorResponse"}

# (method, path, who, body); who: None (no credential), "user", "other" (a second user), "admin".
# fmt: off
SCENARIOS: list[tuple[str, str, str | None, Any]] = [
    *[(m, p, who, None) for m, p in [("GET", "/"), ("POST", "/authorized"), ("GET", "/v1/info")]
      for who in ("user", None)],
    ("GET", "/liveness", None, None),
    ("GET", "/readiness", None, None),
    ("GET", "/metrics", None, None),
    ("GET", "/v1/config", "admin", None),
    ("GET", "/v1/config", "user", None),
    ("GET", "/v1/config", None, None),
    ("GET", "/v1/models", "user", None),
    ("GET", "/v1/models?model_type=embedding", "user", None),
    ("GET", "/v1/models", None, None),
    ("GET", "/v1/providers", "user", None),
    ("GET", "/v1/providers", None, None),
    ("GET", "/v1/providers/local", "user", None),
    ("GET", "/v1/providers/sentence-transformers", "user", None),
    ("GET", "/v1/providers/openai", "user", None),
    ("GET", "/v1/providers/local", None, None),
    *[(m, p, who, None) for m, p in [("GET", "/v1/shields"), ("GET", "/v1/tools")] for who in ("user", None)],
    *[("POST", endpoint, who, body) for endpoint in ("/v1/query", "/v1/streaming_query") for who, body in [
        ("user", {"query": "How do I start the server?"}),
        ("user", {"query": "And then?", "conversation_id": "{CID}"}),
        ("user", {"query": "What is in it?", "attachments": [
            {"attachment_type": "image", "content_type": "image/png", "content": PNG}]}),
        ("other", {"query": "q", "conversation_id": "{CID}"}),
        ("user", {"query": "q", "conversation_id": UNKNOWN}),
        ("user", {"query": "q", "provider": "local", "model": "gpt-4"}),
        ("user", {"query": "q", "provider": "local"}),
        ("user", {"query": "q", "attachments": [
            {"attachment_type": "image", "content_type": "image/png", "content": "not base64!"}]}),
        ("user", {"query": "q" * MAX_BODY}),
        (None, {"query": "q"}),
    ]],
    ("POST", "/v1/streaming_query/interrupt", "user", {"request_id": UNKNOWN}),
    ("POST", "/v1/streaming_query/interrupt", "user", {}),
    ("POST", "/v1/streaming_query/interrupt", None, {"request_id": UNKNOWN}),
    ("POST", "/v1/feedback", "user", "FEEDBACK"),
    ("POST", "/v1/feedback", "other", "FEEDBACK"),
    ("POST", "/v1/feedback", "user", {"conversation_id": UNKNOWN, "user_question": "q", "llm_response": "a",
                                          "sentiment": -1}),
    ("POST", "/v1/feedback", "user", {"conversation_id": "x"}),
    ("POST", "/v1/feedback", None, "FEEDBACK"),
    ("GET", "/v1/feedback/status", None, None),
    ("PUT", "/v1/feedback/status", "admin", {"status": True}),
    ("PUT", "/v1/feedback/status", "user", {"status": True}),
    ("PUT", "/v1/feedback/status", "admin", {"status": "maybe"}),
    ("PUT", "/v1/feedback/status", None, {"status": True}),
    *[(m, p, who, None) for m, p in [("GET", "/v1/conversations"), ("GET", "/v2/conversations")]
      for who in ("user", None)],
    *[(method, f"/{version}/conversations/{cid}", who, body) for version in ("v1", "v2") for method, body in [
        ("GET", None), ("PUT", {"topic_summary": "Starting the server"})]
      for cid, who in [("{CID}", "user"), ("{CID}", "other"), ("not-a-uuid", "user"), (UNKNOWN, "user"),
                       ("{CID}", None)]],
    ("PUT", "/v1/conversations/{CID}", "user", {"topic_summary": 42}),
    ("PUT", "/v2/conversations/{CID}", "user", {}),
    *[("DELETE", f"/{version}/conversations/{cid}", who, None) for version in ("v1", "v2")
      for cid, who in [("{CID}", "other"), ("not-a-uuid", "user"), (UNKNOWN, "user"), ("{CID}", None)]],
    ("DELETE", "/v1/conversations/{CID}", "user", None),
]
# fmt: on


def credentials(module: str, who: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """Headers and query parameters that make the request `who`'s under `module`."""
    if who is None:
        return {}, {}
    if module == "api-key":
        return {"Authorization": f"Bearer {KEYS[who]}"}, {}
    headers = {"Authorization": "Bearer any-token"} if module == "noop-with-token" else {}
    return headers, {"user_id": USER_IDS[who]}


def sse_shapes() -> dict[str, tuple[set[str], set[str]]]:
    """Each event of the document's streaming example: its top-level keys and its data's keys."""
    example = DOCUMENT["paths"]["/v1/streaming_query"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    frames = [json.loads(line[len("data: ") :]) for line in example["example"].splitlines() if line]
    return {frame["event"]: (set(frame), set(frame["data"])) for frame in frames}


def check_sse(where: str, body: bytes) -> list[str]:
    """Every frame is `data: ` + JSON with an event of the example, and at least the example's keys."""
    shapes = {
        **sse_shapes(),  # and the events the document's example does not show, as lightspeed-stack sends them
        "error": ({"event", "data"}, {"status_code", "response", "cause"}),
        "interrupted": ({"event", "data"}, {"request_id"}),
    }
    problems = []
    for line in body.decode().split("\n\n"):
        if not line:
            continue
        if not line.startswith("data: ") or line.startswith("data:  "):
            problems.append(f"{where}: frame not 'data: ' + JSON: {line[:60]!r}")
            continue
        frame = json.loads(line[len("data: ") :])
        top, data = shapes.get(frame.get("event"), (set(), set()))
        if not top or not top <= set(frame) or not data <= set(frame["data"]):
            problems.append(f"{where}: {frame.get('event')!r} frame {sorted(frame)} / {sorted(frame.get('data', {}))}")
    return problems


def check(method: str, path: str, status: int, content_type: str, body: bytes) -> list[str]:
    """What in this response disagrees with lightspeed-stack's document (empty when it agrees)."""
    template, operation = operation_for(SCOPED, method, path.partition("?")[0])
    where = f"{method} {template} {status}"
    documented = operation["responses"].get(str(status))
    if documented is None:
        return [f"{where}: status not in lightspeed-stack's document"]
    if content_type not in documented["content"]:
        return [f"{where}: {content_type} is not among {sorted(documented['content'])}"]
    if content_type == "text/event-stream":
        return check_sse(where, body)
    if content_type != "application/json":
        return []
    media = documented["content"][content_type]
    schema = media.get("schema") or {"$ref": f"#/components/schemas/{BY_STATUS[status]}"}
    schema = SCHEMA_OVERRIDES.get((method.lower(), template, status), schema)
    value = json.loads(body)
    if status == 422 and isinstance(value.get("detail"), list):
        # A body that fails the request model: FastAPI's own 422, before the endpoint runs, whatever the
        # endpoint documents for its own checks.
        schema = {"$ref": "#/components/schemas/HTTPValidationError"}
    return [f"{where}: {problem}" for problem in validate(SCOPED, schema, value)]


async def call(
    client: TestClient[Any, Any], module: str, method: str, path: str, who: str | None, body: Any
) -> tuple[int, str, bytes]:
    headers, params = credentials(module, who)
    resp = await client.request(method, path, json=body, headers=headers, params=params)
    raw = await resp.read()
    return resp.status, resp.headers.get("Content-Type", "").split(";")[0].strip(), raw


def module_config(make_config: ConfigFactory, tmp_path: Path, module: str, **sections: Any) -> Any:
    keys = tmp_path / "keys.yaml"
    roles = {"user": "user", "other": "user", "admin": "admin"}
    entries = [{"key": KEYS[who], "user_id": USER_IDS[who], "role": roles[who]} for who in KEYS]
    keys.write_text(yaml.safe_dump(entries))
    auth: dict[str, Any] = {"module": module}
    if module == "api-key":
        auth["api_key"] = {"keys_file": str(keys)}
    return make_config(authentication=auth, service={"max_request_bytes": MAX_BODY}, **sections)


async def stream_interrupted(client: TestClient[Any, Any], module: str) -> list[tuple[str, str, int, str, bytes]]:
    """Start a stream, interrupt it by its start event's request_id: both responses, for checking."""
    headers, params = credentials(module, "user")
    stream = await client.post("/v1/streaming_query", json={"query": "go"}, headers=headers, params=params)
    start = json.loads((await stream.content.readuntil(b"\n\n"))[len("data: ") :])
    request_id = start["data"]["request_id"]
    status, ctype, raw = await call(
        client, module, "POST", "/v1/streaming_query/interrupt", "user", {"request_id": request_id}
    )
    assert (status, json.loads(raw)["interrupted"]) == (200, True)
    rest = await stream.read()
    stream_ctype = stream.headers["Content-Type"].split(";")[0]
    return [
        ("POST", "/v1/streaming_query/interrupt", status, ctype, raw),
        ("POST", "/v1/streaming_query", 200, stream_ctype, b"data: " + json.dumps(start).encode() + b"\n\n" + rest),
    ]


async def responses(
    module: str, make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path, down_url: str
) -> list[tuple[str, str, int, str, bytes]]:
    """Every scenario's response under `module`, plus an unreachable provider's and an interrupted stream's."""
    client = await make_client(module_config(make_config, tmp_path, module))
    _, _, raw = await call(client, module, "POST", "/v1/query", "user", {"query": "hi"})
    conversation = json.loads(raw)["conversation_id"]
    feedback = {"conversation_id": conversation, "user_question": "q", "llm_response": "a", "sentiment": 1}
    results = []
    for method, template_path, who, body in SCENARIOS:
        path = template_path.replace("{CID}", conversation)
        payload = feedback if body == "FEEDBACK" else json.loads(json.dumps(body).replace("{CID}", conversation))
        results.append((method, path, *await call(client, module, method, path, who, payload)))
    openai = {"provider": "openai", "openai": {"base_url": down_url, "model": "tiny", "timeout_seconds": 2}}
    down = await make_client(module_config(make_config, tmp_path, module, answers=openai))
    for method, path, body in [
        ("GET", "/readiness", None),
        ("POST", "/v1/query", {"query": "q"}),
        ("POST", "/v1/streaming_query", {"query": "q"}),
    ]:
        results.append((method, path, *await call(down, module, method, path, "user", body)))
    slow = await make_client(module_config(make_config, tmp_path, module), provider=TrickleProvider())
    return results + await stream_interrupted(slow, module)


async def test_live_responses_follow_lightspeed_stacks_document(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    """Under noop, noop-with-token and api-key: every response agrees with the document; together they
    produce every (operation, status) it lists, except those NOT_PRODUCED explains."""
    down_url = f"http://127.0.0.1:{free_port()}/v1"
    problems: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for module in MODULES:
        for method, path, status, content_type, raw in await responses(
            module, make_client, make_config, tmp_path, down_url
        ):
            problems += [f"[{module}] {p}" for p in check(method, path, status, content_type, raw)]
            seen.add((method.lower(), operation_for(SCOPED, method, path.partition("?")[0])[0], str(status)))
    assert problems == [], "\n".join(p[:400] for p in problems)
    documented = {(m, p, s) for p, ops in SCOPED["paths"].items() for m, op in ops.items() for s in op["responses"]}
    assert documented - seen - set(NOT_PRODUCED) == set()
    assert seen & set(NOT_PRODUCED) == set(), "produced after all: remove it from NOT_PRODUCED"
