"""lightspeed-stack's wire, condition by condition: for each request below, the status and the whole body
its server (commit cd1a048) sends, compared whole. The texts are taken from its source:
`models/api/requests/query.py` and `models/common/query.py` (validators: FastAPI's 422 items, with
`ctx`), `utils/query.py` (attachment metadata), `utils/responses.py` (an unknown model),
`utils/shields.py` (unknown shields), `models/api/responses/error/` (the bodies: `detail` only, never
`status_code`). Both query endpoints answer each condition the same way before any answer starts.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from lightspeed_common.config import AppConfig
from tests.support import json_files

UNKNOWN = "123e4567-e89b-12d3-a456-426614174000"
PNG = base64.b64encode(b"\x89PNG" + bytes(40)).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(30)).decode()
ATTACHMENT_TYPES = (
    "frozenset({'alert', 'api object', 'configuration', 'error message', 'event', 'image', 'log', 'stack trace'})"
)
CONTENT_TYPES = (
    "frozenset({'application/json', 'application/xml', 'application/yaml', 'image/jpeg', 'image/png', 'text/plain'})"
)


def attachment(attachment_type: str, content_type: str, content: str) -> dict[str, str]:
    return {"attachment_type": attachment_type, "content_type": content_type, "content": content}


def value_error(message: str, loc: list[Any], given: Any) -> dict[str, Any]:
    """One of FastAPI's 422 items for a pydantic validator's ValueError."""
    return {"type": "value_error", "loc": loc, "msg": f"Value error, {message}", "input": given, "ctx": {"error": {}}}


def detail(response: str, cause: str) -> dict[str, Any]:
    return {"detail": {"response": response, "cause": cause}}


def _case(body: dict[str, Any], status: int, expected: Any) -> tuple[dict[str, Any], int, Any]:
    return body, status, expected


def _attachment_case(item: dict[str, str], message: str) -> tuple[dict[str, Any], int, Any]:
    body = {"query": "q", "attachments": [item]}
    return _case(body, 422, {"detail": [value_error(message, ["body", "attachments", 0], item)]})


_LOG_AS_PNG = attachment("log", "image/png", PNG)
_BAD_BASE64 = attachment("image", "image/png", "not base64!")
_JPEG_AS_PNG = attachment("image", "image/png", JPEG)
_SCREENSHOT = attachment("screenshot", "text/plain", "x")
_HTML = attachment("log", "text/html", "<p>")

CASES: dict[str, tuple[dict[str, Any], int, Any]] = {
    "provider without model": _case(
        {"query": "q", "provider": "local"},
        422,
        {
            "detail": [
                value_error(
                    "Model must be specified if provider is specified", ["body"], {"query": "q", "provider": "local"}
                )
            ]
        },
    ),
    "model without provider": _case(
        {"query": "q", "model": "m"},
        422,
        {
            "detail": [
                value_error("Provider must be specified if model is specified", ["body"], {"query": "q", "model": "m"})
            ]
        },
    ),
    "media type neither json nor text": _case(
        {"query": "q", "media_type": "text/html"},
        422,
        {
            "detail": [
                value_error(
                    "media_type must be either 'application/json' or 'text/plain'",
                    ["body"],
                    {"query": "q", "media_type": "text/html"},
                )
            ]
        },
    ),
    "improper conversation id": _case(
        {"query": "q", "conversation_id": "nope"},
        422,
        {"detail": [value_error("Improper conversation ID 'nope'", ["body", "conversation_id"], "nope")]},
    ),
    "no query": _case(
        {}, 422, {"detail": [{"type": "missing", "loc": ["body", "query"], "msg": "Field required", "input": {}}]}
    ),
    "a field it does not know": _case(
        {"query": "q", "extra": 1},
        422,
        {
            "detail": [
                {
                    "type": "extra_forbidden",
                    "loc": ["body", "extra"],
                    "msg": "Extra inputs are not permitted",
                    "input": 1,
                }
            ]
        },
    ),
    "a text type with image data": _attachment_case(
        _LOG_AS_PNG,
        "attachment_type and content_type are inconsistent: attachment_type='log', content_type='image/png'",
    ),
    "an image that is not base64": _attachment_case(
        _BAD_BASE64, "Invalid base64 content for image attachment: Only base64 data is allowed"
    ),
    "an image of another format": _attachment_case(
        _JPEG_AS_PNG, "Image content does not match declared content_type 'image/png': invalid image data"
    ),
    "an attachment type it does not know": _case(
        {"query": "q", "attachments": [_SCREENSHOT]},
        422,
        detail("Invalid attribute value", f"Invalid attachment type screenshot: must be one of {ATTACHMENT_TYPES}"),
    ),
    "a content type it does not know": _case(
        {"query": "q", "attachments": [_HTML]},
        422,
        detail("Invalid attribute value", f"Invalid attachment content type text/html: must be one of {CONTENT_TYPES}"),
    ),
    "an unknown provider": _case(
        {"query": "q", "provider": "openai", "model": "gpt-4"},
        404,
        detail("Model not found", "Model with ID gpt-4 does not exist"),
    ),
    "an unknown model": _case(
        {"query": "q", "provider": "local", "model": "gpt-4"},
        404,
        detail("Model not found", "Model with ID gpt-4 does not exist"),
    ),
    "an unknown conversation": _case(
        {"query": "q", "conversation_id": UNKNOWN},
        404,
        detail("Conversation not found", f"Conversation with ID {UNKNOWN} does not exist"),
    ),
    "a shield it does not have": _case(
        {"query": "q", "shield_ids": ["topic-guard"]},
        404,
        detail("Shield not found", "Shield with ID topic-guard does not exist"),
    ),
    "shields it does not have": _case(
        {"query": "q", "shield_ids": ["pii", "guard", "pii"]},
        404,
        detail("Shields not found", "Shields with ID guard, pii does not exist"),
    ),
    "a vector store it does not have": _case(
        {"query": "q", "vector_store_ids": ["ocp_docs"]},
        404,
        detail("Vector Store not found", "Vector Store with ID ocp_docs does not exist"),
    ),
}


@pytest.mark.parametrize("endpoint", ["/v1/query", "/v1/streaming_query"])
@pytest.mark.parametrize("condition", list(CASES))
async def test_each_condition_gets_lightspeed_stacks_status_and_whole_body(
    client: Any, config: AppConfig, endpoint: str, condition: str
) -> None:
    body, status, expected = CASES[condition]
    resp = await client.post(endpoint, json=body)
    assert (resp.status, await resp.json()) == (status, expected)
    assert json_files(config.user_data_collection.transcripts_storage) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"no_tools": True},
        {"no_tools": None, "generate_topic_summary": None, "media_type": None, "solr": None},
        {"shield_ids": []},
        {"vector_store_ids": None, "shield_ids": None},
        {"solr": {"mode": "hybrid", "filters": {"key": "product", "type": "eq", "value": "ocp"}}},
        {"solr": {"fq": ["product:*openshift*"]}},  # the legacy filter-only object
        {"media_type": "application/json"},
        {"attachments": [attachment("image", "image/png", PNG)]},
    ],
)
async def test_every_field_of_lightspeed_stacks_query_request_is_accepted(client: Any, fields: dict[str, Any]) -> None:
    resp = await client.post("/v1/query", json={"query": "How do I start the server?", **fields})
    assert resp.status == 200, await resp.text()


async def test_no_vector_stores_means_no_retrieval(client: Any) -> None:
    """`vector_store_ids: []` is lightspeed-stack's "query none of them": no passages, no references."""
    question = {"query": "How do I start the server?"}
    everything = await (await client.post("/v1/query", json=question)).json()
    nothing = await (await client.post("/v1/query", json={**question, "vector_store_ids": []})).json()
    assert everything["rag_chunks"]
    assert everything["referenced_documents"]
    assert (nothing["rag_chunks"], nothing["referenced_documents"]) == ([], [])


@pytest.mark.parametrize(("generate", "topic"), [(True, "How do I start the server?"), (False, None), (None, None)])
async def test_a_new_conversation_gets_a_topic_summary_only_when_asked(
    client: Any, generate: bool | None, topic: str | None
) -> None:
    """generate_topic_summary (default true; null reads as false, as lightspeed-stack reads it); a follow-up
    never gives a conversation without one a topic."""
    first = await client.post(
        "/v1/query", json={"query": "How do I start the server?", "generate_topic_summary": generate}
    )
    conversation_id = (await first.json())["conversation_id"]
    await client.post("/v1/query", json={"query": "And stop it?", "conversation_id": conversation_id})
    listed = (await (await client.get("/v1/conversations")).json())["conversations"]
    assert [c["topic_summary"] for c in listed if c["conversation_id"] == conversation_id] == [topic]


def _feedback(**fields: Any) -> dict[str, Any]:
    return {"conversation_id": UNKNOWN, "user_question": "q", "llm_response": "a", **fields}


NONE_GIVEN = "At least one form of feedback must be provided: 'sentiment', 'user_feedback', or 'categories'"
# (method, path, body) -> (status, whole body), for the routes beside the query endpoints.
OTHER_CASES: dict[str, tuple[str, str, dict[str, Any] | None, int, Any]] = {
    "feedback: improper conversation id (unquoted, unlike the query's)": (
        "POST",
        "/v1/feedback",
        _feedback(conversation_id="nope", sentiment=1),
        422,
        {"detail": [value_error("Improper conversation ID nope", ["body", "conversation_id"], "nope")]},
    ),
    "feedback: a sentiment that is neither -1 nor 1": (
        "POST",
        "/v1/feedback",
        _feedback(sentiment=0),
        422,
        {"detail": [value_error("Improper sentiment value of 0, needs to be -1 or 1", ["body", "sentiment"], 0)]},
    ),
    "feedback: none given": (
        "POST",
        "/v1/feedback",
        _feedback(user_feedback=""),
        422,
        {"detail": [value_error(NONE_GIVEN, ["body"], _feedback(user_feedback=""))]},
    ),
    "feedback: an unknown conversation": (
        "POST",
        "/v1/feedback",
        _feedback(sentiment=1),
        404,
        detail("Conversation not found", f"Conversation with ID {UNKNOWN} does not exist"),
    ),
    "conversation: an id that is no UUID": (
        "GET",
        "/v1/conversations/nope",
        None,
        400,
        detail("Invalid conversation ID format", "The conversation ID nope has invalid format."),
    ),
    "conversation: an unknown one": (
        "GET",
        f"/v1/conversations/{UNKNOWN}",
        None,
        404,
        detail("Conversation not found", f"Conversation with ID {UNKNOWN} does not exist"),
    ),
}


@pytest.mark.parametrize("condition", list(OTHER_CASES))
async def test_other_routes_answer_each_condition_as_lightspeed_stack(
    client: Any, config: AppConfig, condition: str
) -> None:
    method, path, body, status, expected = OTHER_CASES[condition]
    resp = await client.request(method, path, json=body)
    assert (resp.status, await resp.json()) == (status, expected)
    assert json_files(config.user_data_collection.feedback_storage) == []


SUID_CASES = {
    "interrupt: a request id that is no UUID": (
        "POST",
        "/v1/streaming_query/interrupt",
        {"request_id": "abc"},
        422,
        {"detail": [value_error("Improper request ID abc", ["body", "request_id"], "abc")]},
    ),
    "interrupt: a well-formed id of no stream": (
        "POST",
        "/v1/streaming_query/interrupt",
        {"request_id": UNKNOWN},
        404,
        detail("Streaming Request not found", f"Streaming Request with ID {UNKNOWN} does not exist"),
    ),
    "conversation: llama-stack's 48-hex id is well-formed, and unknown here": (
        "GET",
        f"/v1/conversations/conv_{'a' * 48}",
        None,
        404,
        detail("Conversation not found", f"Conversation with ID conv_{'a' * 48} does not exist"),
    ),
}
OTHER_CASES.update(SUID_CASES)


@pytest.mark.parametrize(
    ("method", "path", "body", "action"),
    [
        ("POST", "/v1/query", {"query": "And then?"}, "read"),
        ("POST", "/v1/streaming_query", {"query": "And then?"}, "read"),
        ("POST", "/v1/feedback", {"user_question": "q", "llm_response": "a", "sentiment": 1}, "submit feedback for"),
    ],
)
async def test_another_users_conversation_is_403_in_lightspeed_stacks_words(
    client: Any, config: AppConfig, method: str, path: str, body: dict[str, Any], action: str
) -> None:
    """Its ForbiddenResponse.conversation, with the action each endpoint names."""
    started = await client.post("/v1/query?user_id=alice", json={"query": "How do I start the server?"})
    conversation_id = (await started.json())["conversation_id"]
    resp = await client.request(method, f"{path}?user_id=mallory", json={**body, "conversation_id": conversation_id})
    cause = f"User mallory does not have permission to {action} conversation with ID {conversation_id}"
    assert (resp.status, await resp.json()) == (
        403,
        detail("User does not have permission to perform this action", cause),
    )
    assert json_files(config.user_data_collection.feedback_storage) == []
