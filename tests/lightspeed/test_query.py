"""POST /v1/query and /v1/streaming_query: validation, answers, conversations, transcripts."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from lightspeed.answers.providers.base import Completion, Question, Usage
from lightspeed_common.config import AppConfig
from lightspeed_common.errors import ServiceUnavailable
from tests.conftest import ClientFactory
from tests.support import (
    fill_up,
    http_request,
    json_files,
    leave_after_the_status_line,
    transcripts_written,
    until,
    writer_stopped,
)

TRANSCRIPT_KEYS = {
    "metadata",
    "redacted_query",
    "query_is_valid",
    "llm_response",
    "rag_chunks",
    "truncated",
    "attachments",
    "tool_calls",
    "tool_results",
}
METADATA_KEYS = {
    "provider",
    "model",
    "query_provider",
    "query_model",
    "user_id",
    "conversation_id",
    "timestamp",
}


def parse_sse(text: str) -> list[dict[str, Any]]:
    frames = [block for block in text.split("\n\n") if block.strip()]
    assert all(f.startswith("data: ") for f in frames), frames
    return [json.loads(f[len("data: ") :]) for f in frames]


async def test_query_answers_from_the_documents(client: Any, config: AppConfig) -> None:
    """The local provider answers from the best passage and reports it as rag chunk and document."""
    resp = await client.post("/v1/query", json={"query": "How do I start the API server?"})
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == {
        "conversation_id",
        "response",
        "rag_chunks",
        "referenced_documents",
        "truncated",
        "input_tokens",
        "output_tokens",
        "available_quotas",
        "tool_calls",
        "tool_results",
    }
    uuid.UUID(body["conversation_id"])
    assert "make run" in body["response"]
    assert body["rag_chunks"][0]["source"] == "install.md"
    assert body["referenced_documents"][0] == {"doc_url": "install.md", "doc_title": "Installing lightspeed"}
    assert body["input_tokens"] > 0
    assert body["output_tokens"] > 0
    assert body["truncated"] is False


async def test_query_writes_one_transcript_in_the_documented_format(client: Any, config: AppConfig) -> None:
    """One query writes exactly one transcript at <storage>/<user_hash>/<conversation>/<uuid>.json."""
    storage = config.user_data_collection.transcripts_storage
    assert storage is not None
    resp = await client.post(
        "/v1/query?user_id=alice",
        json={
            "query": "Mail bob@example.com from 10.1.2.3, how do I start the server?",
            "attachments": [
                {
                    "attachment_type": "log",
                    "content_type": "text/plain",
                    "content": "token=abcdef123456 failed",
                }
            ],
        },
    )
    assert resp.status == 200
    body = await resp.json()
    await transcripts_written(client)
    files = json_files(storage)
    assert len(files) == 1
    user_hash, conversation_id = files[0].relative_to(storage).parts[:2]
    uuid.UUID(files[0].stem)
    assert conversation_id == body["conversation_id"]
    assert len(user_hash) == 64
    assert "alice" not in user_hash
    record = json.loads(files[0].read_text())
    assert set(record) == TRANSCRIPT_KEYS
    assert set(record["metadata"]) == METADATA_KEYS
    assert record["metadata"]["user_id"] == user_hash
    assert record["metadata"]["provider"] == "local"
    assert record["metadata"]["query_provider"] is None
    assert record["redacted_query"] == "Mail [REDACTED_EMAIL] from [REDACTED_IP], how do I start the server?"
    assert record["attachments"][0]["content"] == "token=[REDACTED_SECRET] failed"
    assert record["llm_response"] == body["response"]
    assert record["rag_chunks"] == body["rag_chunks"]
    assert "alice" not in files[0].read_text()


async def test_the_answer_does_not_wait_for_its_transcripts_fsync(client: Any, config: AppConfig) -> None:
    """The transcript is handed to the record writer and the answer sent meanwhile (issue 28.3): with the
    writer process stopped, a question is still answered; its transcript lands once the writer runs again."""
    storage = config.user_data_collection.transcripts_storage
    assert storage is not None
    async with writer_stopped(client):
        resp = await asyncio.wait_for(client.post("/v1/query", json={"query": "install"}), 60)
        assert resp.status == 200
        assert len(json_files(storage)) == 1
    await transcripts_written(client)
    assert len(json_files(storage)) == 2


async def test_transcripts_disabled_writes_nothing(make_client: ClientFactory, make_config: Any) -> None:
    """With transcripts_enabled false the answer comes back and no file is written."""
    config = make_config(user_data_collection={"transcripts_enabled": False})
    client = await make_client(config)
    resp = await client.post("/v1/query", json={"query": "start the server"})
    assert resp.status == 200
    assert json_files(config.user_data_collection.transcripts_storage) == []


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({}, ["body", "query"], "missing"),
        ({"query": 5}, ["body", "query"], "string_type"),
        ({"query": "q", "extra": 1}, ["body", "extra"], "extra_forbidden"),
        ({"query": "q", "conversation_id": "nope"}, ["body", "conversation_id"], "value_error"),
        ({"query": "q", "provider": "local"}, ["body"], "value_error"),
        ({"query": "q", "model": "extractive"}, ["body"], "value_error"),
        ({"query": "q", "media_type": "text/html"}, ["body"], "value_error"),
        ({"query": "q", "solr": {"mode": "fuzzy"}}, ["body", "solr", "mode"], "literal_error"),
        (
            {"query": "q", "attachments": [{"attachment_type": "log"}]},
            ["body", "attachments", 0, "content_type"],
            "missing",
        ),
    ],
)
@pytest.mark.parametrize("route", ["/v1/query", "/v1/streaming_query"])
async def test_invalid_query_bodies_are_422_with_the_offending_field(
    client: Any, config: AppConfig, route: str, body: dict[str, Any], loc: list[Any], kind: str
) -> None:
    """Each validation rule answers 422 with a pydantic-style entry naming the field; nothing is written."""
    resp = await client.post(route, json=body)
    assert resp.status == 422
    detail = (await resp.json())["detail"]
    assert any(e["loc"] == loc and e["type"] == kind for e in detail), detail
    assert all({"type", "loc", "msg", "input"} <= set(e) <= {"type", "loc", "msg", "input", "ctx"} for e in detail)
    assert json_files(config.user_data_collection.transcripts_storage) == []


async def test_provider_and_model_together_must_be_offered(client: Any) -> None:
    """A provider/model pair this server offers is accepted; another one is lightspeed-stack's 404 for the model,
    whichever part it does not serve."""
    ok = await client.post("/v1/query", json={"query": "start", "provider": "local", "model": "extractive"})
    assert ok.status == 200
    provider = await client.post("/v1/query", json={"query": "start", "provider": "openai", "model": "gpt-4"})
    assert provider.status == 404
    assert await provider.json() == {
        "detail": {"response": "Model not found", "cause": "Model with ID gpt-4 does not exist"},
    }
    model = await client.post("/v1/query", json={"query": "start", "provider": "local", "model": "gpt-4"})
    assert model.status == 404
    assert await model.json() == {
        "detail": {"response": "Model not found", "cause": "Model with ID gpt-4 does not exist"},
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"provider": "local"}, "Value error, Model must be specified if provider is specified"),
        ({"model": "extractive"}, "Value error, Provider must be specified if model is specified"),
    ],
)
@pytest.mark.parametrize("route", ["/v1/query", "/v1/streaming_query"])
async def test_provider_and_model_come_together(client: Any, route: str, body: dict[str, str], message: str) -> None:
    resp = await client.post(route, json={"query": "start", **body})
    assert resp.status == 422
    [error] = (await resp.json())["detail"]
    assert (error["type"], error["loc"], error["msg"]) == ("value_error", ["body"], message)


async def test_malformed_json_is_422(client: Any) -> None:
    """A body that is not JSON is a 422 json_invalid entry, not a 500."""
    resp = await client.post("/v1/query", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 422
    detail = (await resp.json())["detail"]
    assert detail[0]["type"] == "json_invalid"
    assert detail[0]["loc"][0] == "body"


async def test_conversations_belong_to_their_user(client: Any) -> None:
    """A known conversation continues for its owner; another user gets 403; an unknown id 404."""
    first = await (await client.post("/v1/query?user_id=alice", json={"query": "start"})).json()
    conversation_id = first["conversation_id"]
    again = await client.post("/v1/query?user_id=alice", json={"query": "more", "conversation_id": conversation_id})
    assert again.status == 200
    assert (await again.json())["conversation_id"] == conversation_id
    other = await client.post("/v1/query?user_id=mallory", json={"query": "x", "conversation_id": conversation_id})
    assert other.status == 403
    assert await other.json() == {
        "detail": {
            "response": "User does not have permission to perform this action",
            "cause": f"User mallory does not have permission to read conversation with ID {conversation_id}",
        },
    }
    unknown_id = str(uuid.uuid4())
    unknown = await client.post("/v1/query?user_id=alice", json={"query": "x", "conversation_id": unknown_id})
    assert unknown.status == 404
    assert await unknown.json() == {
        "detail": {
            "response": "Conversation not found",
            "cause": f"Conversation with ID {unknown_id} does not exist",
        },
    }


async def test_conversations_survive_a_restart(make_client: ClientFactory, config: AppConfig) -> None:
    """A second app on the same state directory knows the first one's conversations and owners."""
    first = await make_client(config)
    conversation_id = (await (await first.post("/v1/query?user_id=alice", json={"query": "start"})).json())[
        "conversation_id"
    ]
    await first.close()
    second = await make_client(config)
    resp = await second.post("/v1/query?user_id=alice", json={"query": "again", "conversation_id": conversation_id})
    assert resp.status == 200
    other = await second.post("/v1/query?user_id=bob", json={"query": "x", "conversation_id": conversation_id})
    assert other.status == 403


async def test_streaming_query_sends_the_documented_events(client: Any, config: AppConfig) -> None:
    """start, numbered tokens, turn_complete equal to their concatenation, end; then one transcript."""
    resp = await client.post("/v1/streaming_query", json={"query": "How do I turn feedback off?"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = parse_sse(await resp.text())
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start"
    assert kinds[-2:] == ["turn_complete", "end"]
    assert set(kinds[1:-2]) == {"token"}
    start = events[0]["data"]
    assert start["request_id"] == resp.headers["X-Request-ID"]
    tokens = [e["data"] for e in events if e["event"] == "token"]
    assert [t["id"] for t in tokens] == list(range(len(tokens)))
    text = "".join(t["token"] for t in tokens)
    assert events[-2]["data"]["token"] == text
    assert "PUT /v1/feedback/status" in text
    end = events[-1]
    assert set(end["data"]) == {"referenced_documents", "truncated", "input_tokens", "output_tokens"}
    assert end["data"]["truncated"] is None  # as lightspeed-stack sends it here (its document's example too)
    assert end["available_quotas"] == {}
    assert end["data"]["referenced_documents"][0]["doc_url"] == "feedback.md"
    await transcripts_written(client)
    files = json_files(config.user_data_collection.transcripts_storage)
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert record["llm_response"] == text
    assert record["metadata"]["conversation_id"] == start["conversation_id"]
    assert record["truncated"] is False


async def test_streaming_as_plain_text(client: Any) -> None:
    """media_type text/plain streams the answer text itself, then, as lightspeed-stack's does, the documents
    it referred to (title: where), the same as the SSE end event's referenced_documents."""
    asked = {"query": "start the server", "media_type": "text/plain"}
    resp = await client.post("/v1/streaming_query", json=asked)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    answer, rule, documents = text.partition("\n\n---\n\n")
    assert answer == (
        "Run make run to start the API server on 127.0.0.1:8080 with the development config.\n\n"
        "(Source: install.md › Starting the server)"
    )
    assert rule
    events = parse_sse(await (await client.post("/v1/streaming_query", json={"query": asked["query"]})).text())
    referred = events[-1]["data"]["referenced_documents"]
    assert documents.split("\n") == [f"{d['doc_title']}: {d['doc_url']}" for d in referred]
    assert documents.startswith("Installing lightspeed: install.md")


class TrickleProvider:
    """Streams numbered words slowly for as long as anyone listens (our own interface, faked)."""

    name = "local"
    models = ("extractive",)

    async def complete(self, question: Question) -> Completion:
        raise AssertionError("not used")

    async def stream(self, question: Question, usage: Usage) -> AsyncGenerator[str, None]:
        for i in range(2000):
            yield f"w{i} "
            await asyncio.sleep(0.005)

    async def unready_reason(self) -> str | None:
        return None

    async def close(self) -> None:
        return None


async def test_an_interrupted_stream_still_writes_its_transcript(make_client: ClientFactory, config: AppConfig) -> None:
    """A client that hangs up mid-stream leaves a transcript of what was sent, marked truncated."""
    storage = config.user_data_collection.transcripts_storage
    client = await make_client(config, provider=TrickleProvider())
    resp = await client.post("/v1/streaming_query", json={"query": "How do I start the server?"})
    for _ in range(4):
        await resp.content.readuntil(b"\n\n")
    resp.close()
    for _ in range(500):
        if json_files(storage):
            break
        await asyncio.sleep(0.01)
    files = json_files(storage)
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert record["truncated"] is True
    words = record["llm_response"].split()
    assert len(words) >= 3
    assert words == [f"w{i}" for i in range(len(words))]
    assert len(words) < 2000


async def test_query_with_no_relevant_passage_says_so(client: Any, config: AppConfig, tmp_path: Path) -> None:
    """A question the documents do not cover gets the no-answer text and no rag chunks."""
    resp = await client.post("/v1/query", json={"query": "Recipe for sourdough bread with rye flour"})
    body = await resp.json()
    assert body["rag_chunks"] == []
    assert body["response"].startswith("I could not find anything")


class FailingMidStreamProvider(TrickleProvider):
    """Sends two pieces, then the upstream fails (our own interface, faked)."""

    async def stream(self, question: Question, usage: Usage) -> AsyncGenerator[str, None]:
        yield "partial "
        yield "answer "
        raise ServiceUnavailable("Unable to connect to the answer provider", "connection reset by upstream")


async def test_a_failure_after_the_stream_began_is_an_error_event(
    make_client: ClientFactory, config: AppConfig
) -> None:
    """The stream ends with an error event naming the cause; the partial answer is kept as a truncated transcript."""
    client = await make_client(config, provider=FailingMidStreamProvider())
    resp = await client.post("/v1/streaming_query", json={"query": "How do I start the server?"})
    assert resp.status == 200
    events = parse_sse(await resp.text())
    assert [e["event"] for e in events] == ["start", "token", "token", "error"]
    assert events[-1]["data"] == {  # with status_code, as lightspeed-stack's stream errors have it
        "status_code": 503,
        "response": "Unable to connect to the answer provider",
        "cause": "connection reset by upstream",
    }
    await transcripts_written(client)
    files = json_files(config.user_data_collection.transcripts_storage)
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert record["llm_response"] == "partial answer "
    assert record["truncated"] is True


async def test_a_failure_in_a_plain_text_stream_ends_it_with_the_status_and_cause(
    make_client: ClientFactory, config: AppConfig
) -> None:
    """A text/plain stream has no events: the failure is written as lightspeed-stack writes it there, so the
    reader can tell a failed answer from a whole one."""
    client = await make_client(config, provider=FailingMidStreamProvider())
    resp = await client.post(
        "/v1/streaming_query", json={"query": "How do I start the server?", "media_type": "text/plain"}
    )
    assert resp.status == 200
    assert await resp.text() == (
        "partial answer Status: 503 - Unable to connect to the answer provider - connection reset by upstream"
    )


JSON = {"Content-Type": "application/json"}


async def raw_post(port: int, path: str, body: bytes) -> bytes:
    """One HTTP/1.1 request on a raw connection (kept alive, as clients do), and all the server sends until
    it closes the connection: the observable end, as a client without a parser of its own would see it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(http_request("POST", path, JSON, body))
    try:
        return await asyncio.wait_for(reader.read(), 60)  # read() returns when the server closes
    finally:
        writer.close()


async def test_a_failure_after_the_end_event_cuts_the_stream_short_without_a_second_response(
    make_client: ClientFactory, make_config: Any, small_tmpfs: Any
) -> None:
    """The answer was streamed to its end event, then the conversation could not be stored (its disk full):
    the status line went out long ago, so the server closes the connection without the last chunk, and the
    client sees the stream cut short. No second response is written into the body (it was, a 500 with its
    own status line, which no client can parse), and the log says what failed and that it was cut short."""
    state = small_tmpfs("state", "size=8m")
    client = await make_client(make_config(service={"state_dir": str(state)}))
    fill_up(state)
    with capture_logs() as logs:
        received = await raw_post(
            client.server.port, "/v1/streaming_query", json.dumps({"query": "How do I start the server?"}).encode()
        )
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), received[:200]
    assert b"Transfer-Encoding: chunked" in head
    assert b'"event": "end"' in body
    assert b"HTTP/1.1" not in body, body[-400:]
    assert not body.endswith(b"0\r\n\r\n"), body[-200:]  # no last chunk: the client knows it is cut short
    failed = [e for e in logs if e["event"] == "request_failed"]
    assert len(failed) == 1, logs
    assert failed[0]["route"] == "/v1/streaming_query"
    assert failed[0]["response_cut_short"] is True
    assert failed[0]["exc_info"] is True
    handled = [e for e in logs if e["event"] == "request_handled"]
    assert [e["status"] for e in handled] == [200]  # the status the client got
    metrics = await (await client.get("/metrics")).text()
    assert (
        'lightspeed_http_responses_cut_short_total{cause="failure",method="POST",route="/v1/streaming_query"} 1.0'
        in metrics
    )


class FailsOnceTheClientHasGone(TrickleProvider):
    """Sends a piece, waits until the client's connection has closed on the server's side, then fails with an
    error of its own, not the connection's (our own interface, faked)."""

    server: Any = None  # the test server's aiohttp Server, whose connections it watches

    async def stream(self, question: Question, usage: Usage) -> AsyncGenerator[str, None]:
        yield "partial "

        async def gone() -> bool:
            return all(connection.transport is None for connection in self.server.connections)

        await until(gone, "the client's connection closed")
        raise RuntimeError("the provider broke")


async def test_a_failure_of_ours_after_the_client_left_is_still_request_failed(
    make_client: ClientFactory, config: AppConfig
) -> None:
    """The client left, and then the server failed for a reason of its own: that is a failure, logged with its
    traceback and counted as one, not the info line of a client that left."""
    provider = FailsOnceTheClientHasGone()
    client = await make_client(config, provider=provider)
    assert client.server.runner is not None
    provider.server = client.server.runner.server
    request = http_request("POST", "/v1/streaming_query", JSON, json.dumps({"query": "How do I start?"}).encode())
    with capture_logs() as logs:
        head = await leave_after_the_status_line(client, request, logs)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert not [e for e in logs if e["event"] == "response_cut_short"], logs
    failed = [e for e in logs if e["event"] == "request_failed"]
    assert len(failed) == 1, logs
    assert failed[0]["response_cut_short"] is True
    metrics = await (await client.get("/metrics")).text()
    assert 'cut_short_total{cause="failure",method="POST",route="/v1/streaming_query"} 1.0' in metrics
