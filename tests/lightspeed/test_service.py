"""Operational routes and the error contract: liveness, readiness, metrics, OpenAPI, 404/405/413/500."""

from __future__ import annotations

import asyncio
import gc
import shutil
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from lightspeed.answers.providers.base import Completion, Question, Usage
from lightspeed.api.routes import ROUTES
from lightspeed.api.state import OPENAPI, SERVER
from lightspeed_common.config import AppConfig
from lightspeed_common.errors import ServiceUnavailable
from tests.conftest import ClientFactory
from tests.support import transcripts_written


class BrokenProvider:
    """Raises an unexpected error (our own interface, faked)."""

    name = "local"
    models = ("extractive",)

    async def complete(self, question: Question) -> Completion:
        raise RuntimeError("secret internal detail")

    def stream(self, question: Question, usage: Usage) -> AsyncGenerator[str, None]:
        raise RuntimeError("secret internal detail")

    async def unready_reason(self) -> str | None:
        return "the provider is broken"

    async def close(self) -> None:
        return None


class FailingProvider(BrokenProvider):
    """Ready, but every answer fails as an unreachable endpoint would."""

    async def complete(self, question: Question) -> Completion:
        raise ServiceUnavailable("Unable to connect to the answer provider", "connection refused")

    async def stream(self, question: Question, usage: Usage) -> AsyncGenerator[str, None]:
        raise ServiceUnavailable("Unable to connect to the answer provider", "connection refused")
        yield ""  # an async generator that fails at its first piece, as a refused connection does

    async def unready_reason(self) -> str | None:
        return None


async def test_liveness(client: Any) -> None:
    resp = await client.get("/liveness")
    assert resp.status == 200
    assert await resp.json() == {"alive": True}


async def test_readiness_is_ready_with_documents_and_storage(client: Any) -> None:
    resp = await client.get("/readiness")
    assert resp.status == 200
    assert await resp.json() == {
        "ready": True,
        "reason": "All providers are healthy",
        "overall_status": "healthy",
        "impacts": None,
        "providers": [],
    }


async def test_readiness_is_503_when_storage_disappears(client: Any, config: AppConfig) -> None:
    """A storage directory removed under the running server makes it unready, naming the directory."""
    storage = config.user_data_collection.feedback_storage
    assert storage is not None
    shutil.rmtree(storage)
    resp = await client.get("/readiness")
    assert resp.status == 503
    body = await resp.json()
    assert body["ready"] is False
    assert str(storage) in body["reason"]
    assert (body["overall_status"], body["impacts"], body["providers"]) == (
        "degraded",
        ["Transcripts and feedback cannot be stored"],
        [],
    )


async def test_readiness_is_503_when_the_provider_is_unusable(make_client: ClientFactory, config: AppConfig) -> None:
    client = await make_client(config, provider=BrokenProvider())
    resp = await client.get("/readiness")
    assert resp.status == 503
    assert await resp.json() == {
        "ready": False,
        "reason": "the provider is broken",
        "overall_status": "unhealthy",
        "impacts": ["LLM inference unavailable"],
        "providers": [{"provider_id": "local", "status": "unhealthy", "message": "the provider is broken"}],
    }


async def test_an_unexpected_error_is_a_generic_500(make_client: ClientFactory, config: AppConfig) -> None:
    """The client gets a generic body, never the exception text or a stack trace."""
    client = await make_client(config, provider=BrokenProvider())
    for route in ("/v1/query", "/v1/streaming_query"):
        with capture_logs() as logs:
            resp = await client.post(route, json={"query": "How do I start the server?"})
        failed = [e for e in logs if e["event"] == "request_failed"]
        assert len(failed) == 1
        assert failed[0]["log_level"] == "error"
        assert failed[0]["route"] == route
        assert failed[0]["exc_info"] is True  # the traceback goes to the log
        assert resp.status == 500
        text = await resp.text()
        assert "secret internal detail" not in text
        assert "Traceback" not in text
        assert (await resp.json())["detail"]["response"] == "Internal server error"


async def test_unknown_routes_and_methods_answer_in_the_error_format(client: Any) -> None:
    missing = await client.get("/v1/nothing")
    assert missing.status == 404
    assert await missing.json() == {
        "detail": {"response": "Not Found", "cause": "No such route"},
    }
    wrong = await client.get("/v1/feedback")
    assert wrong.status == 405
    assert (await wrong.json())["detail"]["cause"] == "Allowed methods: POST"


async def test_oversized_bodies_are_413(make_client: ClientFactory, make_config: Any) -> None:
    """A body over service.max_request_bytes is refused with 413 and nothing is written."""
    config = make_config(service={"max_request_bytes": 2048})
    client = await make_client(config)
    resp = await client.post("/v1/query", json={"query": "x" * 5000})
    assert resp.status == 413
    body = await resp.json()
    assert body["detail"]["response"] == "Request Entity Too Large"


async def test_metrics_count_requests_and_records(client: Any) -> None:
    """Prometheus text with requests by route and status, latency and records written by kind."""
    await client.post("/v1/query", json={"query": "start the server"})
    await client.post("/v1/query", json={})
    await transcripts_written(client)
    text = await (await client.get("/metrics")).text()
    assert 'lightspeed_http_requests_total{method="POST",route="/v1/query",status="200"} 1.0' in text
    assert 'lightspeed_http_requests_total{method="POST",route="/v1/query",status="422"} 1.0' in text
    assert 'lightspeed_http_request_duration_seconds_count{method="POST",route="/v1/query"} 2.0' in text
    assert 'lightspeed_records_written_total{kind="transcript"} 1.0' in text
    assert 'lightspeed_records_written_total{kind="feedback"} 0.0' in text


async def test_models_lists_the_answer_and_embedding_models_by_type(client: Any) -> None:
    llm = {
        "identifier": "local/extractive",
        "metadata": {"embedding_model": "all-MiniLM-L6-v2"},
        "api_model_type": "llm",
        "provider_id": "local",
        "type": "model",
        "provider_resource_id": "extractive",
        "model_type": "llm",
    }
    embedding = {
        "identifier": "sentence-transformers/all-MiniLM-L6-v2",
        "metadata": {"embedding_dimension": 384},
        "api_model_type": "embedding",
        "provider_id": "sentence-transformers",
        "type": "model",
        "provider_resource_id": "all-MiniLM-L6-v2",
        "model_type": "embedding",
    }
    assert (await (await client.get("/v1/models")).json())["models"] == [llm, embedding]
    assert (await (await client.get("/v1/models?model_type=llm")).json())["models"] == [llm]
    assert (await (await client.get("/v1/models?model_type=embedding")).json())["models"] == [embedding]
    assert (await (await client.get("/v1/models?model_type=tts")).json())["models"] == []


async def test_models_needs_a_token_when_the_auth_module_does(make_client: ClientFactory, make_config: Any) -> None:
    client = await make_client(make_config(authentication={"module": "noop-with-token"}))
    missing = await client.get("/v1/models")
    assert missing.status == 401
    assert await missing.json() == {
        "detail": {
            "response": "Missing or invalid credentials provided by client",
            "cause": "No Authorization header found",
        },
    }
    assert (await client.get("/v1/models", headers={"Authorization": "Bearer t"})).status == 200


async def test_openapi_describes_every_route_and_body(client: Any) -> None:
    """Every registered route is in /openapi.json, with its request body schema where it has one."""
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    registered = {
        (r.method.lower(), r.resource.canonical)
        for r in client.app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert registered == documented
    query_body = doc["paths"]["/v1/query"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert query_body == {"$ref": "#/components/schemas/QueryRequest"}
    feedback = doc["components"]["schemas"]["FeedbackRequest"]
    assert feedback["additionalProperties"] is False
    assert set(feedback["required"]) == {"conversation_id", "user_question", "llm_response"}
    assert len(ROUTES) == len(documented)


async def test_request_ids_are_echoed_or_made(client: Any) -> None:
    given = await client.get("/liveness", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = await client.get("/liveness", headers={"X-Request-ID": "bad id with spaces"})
    assert len(made.headers["X-Request-ID"]) == 32
    assert made.headers["X-Request-ID"] != (await client.get("/liveness")).headers["X-Request-ID"]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, by name and sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_carry_lightspeed_stacks_ls_family(make_client: ClientFactory, config: AppConfig) -> None:
    """The ls_* names and labels; token counters grow after an answer and stay put after a 4xx."""
    client = await make_client(config)
    query = {"endpoint": "/v1/query", "model": "extractive", "provider": "local"}
    llm = {"model": "extractive", "provider": "local"}

    def key(name: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (name, tuple(sorted(labels.items())))

    async def page() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return samples(await (await client.get("/metrics")).text())

    first = await page()
    assert first[key("ls_provider_model_configuration", llm)] == 1.0
    assert first[key("ls_started_in_degraded_mode", {})] == 0.0
    assert key("ls_llm_token_sent_total", query) not in first
    assert (await client.post("/v1/query", json={"query": "How do I start the server?"})).status == 200
    after = await page()
    sent = after[key("ls_llm_token_sent_total", query)]
    received = after[key("ls_llm_token_received_total", query)]
    assert sent > 0
    assert received > 0
    assert after[key("ls_llm_calls_total", llm)] == 1.0
    assert after[key("ls_llm_inference_duration_seconds_count", query)] == 1.0
    assert after[key("ls_rest_api_calls_total", {"path": "/v1/query", "status_code": "200"})] == 1.0
    assert after[key("ls_response_duration_seconds_count", {"path": "/v1/query"})] == 1.0
    assert after[key("ls_llm_validation_errors_total", llm)] == 0.0
    assert (await client.post("/v1/query", json={"query": "x", "provider": "local"})).status == 422
    refused = await page()
    assert refused[key("ls_llm_token_sent_total", query)] == sent
    assert refused[key("ls_llm_token_received_total", query)] == received
    assert refused[key("ls_rest_api_calls_total", {"path": "/v1/query", "status_code": "422"})] == 1.0
    streamed = await client.post("/v1/streaming_query", json={"query": "How do I start the server?"})
    await streamed.read()
    stream = {**query, "endpoint": "/v1/streaming_query"}
    assert (await page())[key("ls_llm_token_received_total", stream)] > 0


async def test_failed_llm_calls_are_counted(make_client: ClientFactory, config: AppConfig) -> None:
    """A failed call counts as a failure only (item 23.16): not as a call, not in the token counters."""
    client = await make_client(config, provider=FailingProvider())
    assert (await client.post("/v1/query", json={"query": "start"})).status == 503
    streamed = await client.post("/v1/streaming_query", json={"query": "start"})
    assert streamed.status == 503
    text = await (await client.get("/metrics")).text()
    found = samples(text)
    llm = (("model", "extractive"), ("provider", "local"))
    assert found[("ls_llm_calls_failures_total", llm)] == 2.0
    assert found.get(("ls_llm_calls_total", llm), 0.0) == 0.0
    counted = [
        value
        for (name, _), value in found.items()
        if name.startswith(("ls_llm_token_", "ls_llm_inference_duration_seconds_count"))
    ]
    assert sum(counted) == 0.0
    assert found[("ls_started_in_degraded_mode", ())] == 0.0


async def test_root_authorized_and_info_answer_as_lightspeed_stack(
    make_client: ClientFactory, make_config: Any, tmp_path: Path
) -> None:
    from lightspeed_common.version import VERSION

    client = await make_client(make_config())
    root = await client.get("/")
    assert root.status == 200
    assert root.headers["Content-Type"].startswith("text/html")
    assert f"lightspeed {VERSION}" in await root.text()
    me = await client.post("/authorized?user_id=alice")
    username = make_config().authentication.default_username
    assert await me.json() == {"user_id": "alice", "username": username, "skip_userid_check": True}
    assert await (await client.get("/v1/info")).json() == {
        "name": "lightspeed",
        "service_version": VERSION,
        "llama_stack_version": "none",
    }
    keys = tmp_path / "keys.yaml"
    keys.write_text('[{"key": "k-0123456789abcdef", "user_id": "carol", "role": "user"}]')
    keyed = await make_client(make_config(authentication={"module": "api-key", "api_key": {"keys_file": str(keys)}}))
    checked = await keyed.post("/authorized", headers={"Authorization": "Bearer k-0123456789abcdef"})
    assert await checked.json() == {"user_id": "carol", "username": "carol", "skip_userid_check": False}
    guarded = await make_client(make_config(authentication={"module": "noop-with-token"}))
    for method, path in (("GET", "/"), ("POST", "/authorized"), ("GET", "/v1/info")):
        assert (await guarded.request(method, path)).status == 401


async def test_a_chunked_body_past_the_limit_is_413_without_a_content_length(
    make_client: ClientFactory, make_config: Any
) -> None:
    """Item 23.14: a body sent in chunks (no Content-Length) is measured as it arrives: 413 past
    service.max_request_bytes; under it, the same way of sending is answered."""
    client = await make_client(make_config(service={"max_request_bytes": 4096}))

    async def chunks(size: int) -> AsyncGenerator[bytes, None]:
        yield b'{"query": "How do I start the server?", "system_prompt": "'
        for _ in range(size // 1024):
            yield b"x" * 1024
        yield b'"}'

    small = await client.post("/v1/query", data=chunks(2048), headers={"Content-Type": "application/json"})
    assert small.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert small.status == 200
    large = await client.post("/v1/query", data=chunks(8192), headers={"Content-Type": "application/json"})
    assert large.status == 413
    assert (await large.json())["detail"]["cause"] == "The request body is larger than this server accepts"


async def _post_in_one_write(port: int, path: str, chunks: list[bytes]) -> tuple[int, bytes]:
    """POST a chunked body in the same single write as the headers: all of it is there before the
    handler runs. The status and the response body."""
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + encoded)
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


async def test_a_body_that_arrived_with_its_headers_is_read_whole_and_still_limited(
    make_client: ClientFactory, make_config: Any
) -> None:
    """A body already in the buffer when the handler starts is taken from it (no pacing timers): in
    several chunks it is read whole, and past service.max_request_bytes it is 413 all the same."""
    client = await make_client(make_config(service={"max_request_bytes": 4096}))
    port = client.server.port
    assert port is not None
    question = [b'{"query": "How do I start', b" the server?", b'", "system_prompt": "', b"y" * 1500, b'"}']
    status, body = await _post_in_one_write(port, "/v1/query", question)
    assert status == 200, body
    assert b"conversation_id" in body
    too_large = [b'{"query": "How do I start the server?", "system_prompt": "', *[b"x" * 1024] * 8, b'"}']
    status, body = await _post_in_one_write(port, "/v1/query", too_large)
    assert status == 413
    assert b"larger than this server accepts" in body


async def test_what_start_up_made_is_out_of_the_collectors_reach_and_a_second_start_is_cheap(
    make_client: ClientFactory, config: AppConfig
) -> None:
    """Start-up freezes the heap (torch, the model, the index: full collections would walk them and stall
    the event loop); a second application in the same process freezes what it made without a full
    collection first, and shares the first's OpenAPI bodies and token counter instead of making them again."""
    first = await make_client(config)
    assert gc.get_freeze_count() > 0
    frozen = gc.get_freeze_count()
    made_since = [[n] for n in range(1000)]  # besides what the second start makes: it is frozen too
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            collections.append(1)

    gc.callbacks.append(count)
    gc.disable()  # only a full collection asked for counts, not one the allocations happen to trigger
    try:
        second = await make_client(config.model_copy(deep=True))
    finally:
        gc.enable()
        gc.callbacks.remove(count)
    assert collections == []  # no full collection to freeze again (0.4 s each with torch loaded)
    assert gc.get_freeze_count() > frozen + len(made_since)
    assert second.app[OPENAPI] == first.app[OPENAPI]
    assert second.app[OPENAPI] is not first.app[OPENAPI]
    one, other = (c.app[SERVER].answers.index.embedder for c in (first, second))
    assert one.token_counter() is other.token_counter()
