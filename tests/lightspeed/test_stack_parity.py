"""What lightspeed-stack's clients rely on beyond the shapes: image attachments, interrupting a stream, token
counts, and /v1/config, /v1/providers, /v1/shields, /v1/tools with what this server really is."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from lightspeed.answers.providers.base import Question, Usage
from lightspeed.answers.providers.local import NO_IMAGES
from lightspeed.models.embedding import SentenceTransformerEmbedder
from lightspeed_common.config import AppConfig
from tests.conftest import ClientFactory
from tests.fake_llm import FakeLLM, free_port, openai_config
from tests.lightspeed.test_query import TrickleProvider, parse_sse
from tests.support import json_files, transcripts_written

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
JPEG_BYTES = b"\xff\xd8\xff\xe0" + bytes(30)
PNG, JPEG = base64.b64encode(PNG_BYTES).decode(), base64.b64encode(JPEG_BYTES).decode()


def image(content: str = PNG, content_type: str = "image/png", attachment_type: str = "image") -> dict[str, str]:
    return {"attachment_type": attachment_type, "content_type": content_type, "content": content}


async def test_images_are_accepted_and_recorded_without_their_bytes(client: Any, config: AppConfig) -> None:
    """The local provider says plainly it cannot read images, and still answers the text; the transcript and the
    conversation keep each attachment's type, content type and size, never the image."""
    attachments = [image(), image(JPEG, "image/jpeg"), {"attachment_type": "log", "content_type": "text/plain",
                                                         "content": "disk full, mail ops@example.com"}]  # fmt: skip
    resp = await client.post("/v1/query", json={"query": "How do I start the server?", "attachments": attachments})
    assert resp.status == 200
    body = await resp.json()
    assert body["response"].startswith(NO_IMAGES.format(what="2 images"))
    assert "make run" in body["response"]
    await transcripts_written(client)
    record_text = json_files(config.user_data_collection.transcripts_storage)[0].read_text()
    assert PNG not in record_text
    assert JPEG not in record_text
    assert json.loads(record_text)["attachments"] == [
        {"attachment_type": "image", "content_type": "image/png", "size": len(PNG_BYTES)},
        {"attachment_type": "image", "content_type": "image/jpeg", "size": len(JPEG_BYTES)},
        {
            "attachment_type": "log",
            "content_type": "text/plain",
            "size": 31,
            "content": "disk full, mail [REDACTED_EMAIL]",
        },
    ]
    history = await (await client.get(f"/v2/conversations/{body['conversation_id']}")).json()
    assert PNG not in json.dumps(history)
    one = await client.post("/v1/query", json={"query": "What is wrong here?", "attachments": [image()]})
    assert (await one.json())["response"].startswith(NO_IMAGES.format(what="image"))


async def test_the_openai_provider_passes_images_as_image_parts(
    make_client: ClientFactory, make_config: Any, llm: tuple[FakeLLM, str]
) -> None:
    fake, url = llm
    client = await make_client(openai_config(make_config, url))
    attachments = [image(), {"attachment_type": "log", "content_type": "text/plain", "content": "E: no space"}]
    resp = await client.post("/v1/query", json={"query": "What does the screen say?", "attachments": attachments})
    assert resp.status == 200
    user = fake.requests[0]["messages"][-1]
    assert user["role"] == "user"
    text, picture = user["content"]
    assert text["type"] == "text"
    assert text["text"].startswith("What does the screen say?")
    assert "E: no space" in text["text"]
    assert PNG not in text["text"]  # the image travels once, as its part
    assert picture == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}


class FencedTrickleProvider(TrickleProvider):
    """Opens a code block, then streams words into it for as long as anyone listens."""

    async def stream(self, question: Question, usage: Usage) -> AsyncGenerator[str, None]:
        yield "Run:\n\n```sh\n"
        async for word in super().stream(question, usage):
            yield word


async def test_interrupt_stops_a_running_stream(make_client: ClientFactory, config: AppConfig) -> None:
    """The stream's start event names its request_id; interrupting it ends the stream at once as lightspeed-stack
    ends it: a last token that closes the code block the answer had open and says it was stopped, then an
    `interrupted` event (no turn_complete, no end). The conversation and the transcript keep the answer with
    that token; only its owner can interrupt it, only while it runs."""
    client = await make_client(config, provider=FencedTrickleProvider())
    stream = await client.post("/v1/streaming_query?user_id=alice", json={"query": "How do I start?"})
    head = await stream.content.readuntil(b"\n\n")
    start = json.loads(head[len("data: ") :])
    request_id = start["data"]["request_id"]
    head += await stream.content.readuntil(b"\n\n")  # a token: the stream is running
    foreign = await client.post("/v1/streaming_query/interrupt?user_id=mallory", json={"request_id": request_id})
    assert foreign.status == 404
    stopped = await client.post("/v1/streaming_query/interrupt?user_id=alice", json={"request_id": request_id})
    assert await stopped.json() == {
        "request_id": request_id,
        "interrupted": True,
        "message": "Streaming request interrupted",
    }
    events = parse_sse((head + await stream.read()).decode())
    last, interrupted = events[-2:]
    assert interrupted == {"event": "interrupted", "data": {"request_id": request_id}}
    assert last["event"] == "token"
    assert last["data"] == {"id": len(events) - 3, "token": "\n```\n\n*Response stopped by the user.*"}
    assert not {"turn_complete", "end"} & {e["event"] for e in events}
    answer = "".join(e["data"]["token"] for e in events if e["event"] == "token")
    await transcripts_written(client)
    record = json.loads(json_files(config.user_data_collection.transcripts_storage)[0].read_text())
    assert record["truncated"] is True
    assert record["llm_response"] == answer
    assert 0 < len(answer.split()) < 2000
    conversation = await client.get(f"/v1/conversations/{start['data']['conversation_id']}?user_id=alice")
    assert (await conversation.json())["chat_history"][0]["messages"][-1]["content"] == answer
    again = await client.post("/v1/streaming_query/interrupt?user_id=alice", json={"request_id": request_id})
    assert again.status == 404
    assert (await again.json())["detail"] == {
        "response": "Streaming Request not found",
        "cause": f"Streaming Request with ID {request_id} does not exist",
    }


async def test_the_local_provider_counts_tokens_with_its_tokenizer(
    client: Any, embedder: SentenceTransformerEmbedder
) -> None:
    count = embedder.token_counter()
    question = "How do I start the server?"
    body = await (await client.post("/v1/query", json={"query": question})).json()
    assert body["input_tokens"] == count(question) == 7
    assert body["output_tokens"] == count(body["response"])
    assert body["available_quotas"] == {}
    events = parse_sse(await (await client.post("/v1/streaming_query", json={"query": question})).text())
    end = events[-1]
    assert (end["event"], end["available_quotas"]) == ("end", {})
    assert end["data"]["input_tokens"] == 7
    assert end["data"]["output_tokens"] == count(events[-2]["data"]["token"])


async def test_openai_streams_report_the_servers_usage(
    make_client: ClientFactory, make_config: Any, llm: tuple[FakeLLM, str]
) -> None:
    """The usage chunk the server sends last becomes the end event's counts; a server that sends none gets an
    estimate, never zero."""
    fake, url = llm
    client = await make_client(openai_config(make_config, url))
    events = parse_sse(await (await client.post("/v1/streaming_query", json={"query": "Start?"})).text())
    assert fake.requests[0]["stream_options"] == {"include_usage": True}
    assert (events[-1]["data"]["input_tokens"], events[-1]["data"]["output_tokens"]) == (42, 4)
    fake.stream_usage = False
    events = parse_sse(await (await client.post("/v1/streaming_query", json={"query": "Start?"})).text())
    estimated = events[-1]["data"]
    assert estimated["input_tokens"] > 0
    assert estimated["output_tokens"] == 4  # "Use make run.": three words and a full stop


async def test_config_is_for_admins_with_secrets_masked(
    make_client: ClientFactory, make_config: Any, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        "- {key: user-key-0123456789, user_id: alice}\n- {key: admin-key-0123456789, user_id: op, role: admin}\n"
    )
    secret = "sk-never-shown-0123456789"
    config = make_config(
        authentication={"module": "api-key", "api_key": {"keys_file": str(keys)}},
        answers={"provider": "openai", "openai": {"base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "tiny",
                                                  "api_key": secret}},
    )  # fmt: skip
    client = await make_client(config)
    refused = await client.get("/v1/config", headers={"Authorization": "Bearer user-key-0123456789"})
    assert refused.status == 403
    assert (await refused.json())["detail"]["cause"] == "User alice is not authorized to access this endpoint."
    admin = {"Authorization": "Bearer admin-key-0123456789"}
    raw = await (await client.get("/v1/config", headers=admin)).text()
    assert secret not in raw
    configuration = json.loads(raw)["configuration"]
    assert configuration["inference"]["providers"][0]["extra"]["api_key"] == "********"
    assert configuration["inference"]["default_model"] == "tiny"
    assert configuration["authentication"] == {"module": "api-key"}
    assert configuration["service"]["auth_enabled"] is True
    provider = await (await client.get("/v1/providers/openai", headers=admin)).text()
    assert secret not in provider
    described = json.loads(provider)
    assert described["config"]["api_key"] == "********"
    assert described["health"]["status"] == "Error"  # nothing listens on that port
    assert "cannot be reached" in described["health"]["message"]


async def test_providers_shields_and_tools_are_what_this_server_has(client: Any) -> None:
    listed = await (await client.get("/v1/providers")).json()
    assert listed == {
        "providers": {
            "inference": [
                {"provider_id": "local", "provider_type": "inline::lightspeed-extractive"},
                {"provider_id": "sentence-transformers", "provider_type": "inline::sentence-transformers"},
            ]
        }
    }
    local = await (await client.get("/v1/providers/local")).json()
    assert (local["api"], local["health"]) == ("inference", {"status": "OK", "message": "Healthy"})
    embedding = await (await client.get("/v1/providers/sentence-transformers")).json()
    assert embedding["config"] == {"model": "all-MiniLM-L6-v2", "embedding_dimension": 384}
    missing = await client.get("/v1/providers/openai")
    assert missing.status == 404
    assert (await missing.json())["detail"] == {
        "response": "Provider not found",
        "cause": "Provider with ID openai does not exist",
    }
    assert await (await client.get("/v1/shields")).json() == {"shields": []}
    assert await (await client.get("/v1/tools")).json() == {"tools": []}


async def test_two_running_streams_never_share_a_request_id(make_client: ClientFactory, config: AppConfig) -> None:
    """A client may send the same X-Request-ID twice: the second stream gets its own id, so an interrupt
    stops exactly the stream it names. (An X-Request-ID that is no UUID is never a stream's id: the
    interrupt takes UUIDs only, as lightspeed-stack's does.)"""
    client = await make_client(config, provider=TrickleProvider())
    same = "0b7c8f5e-2222-4d6a-9a43-7d7c2d8b6f01"
    headers = {"X-Request-ID": same}
    first = await client.post("/v1/streaming_query", json={"query": "a"}, headers=headers)
    second = await client.post("/v1/streaming_query", json={"query": "b"}, headers=headers)
    ids = []
    for stream in (first, second):
        ids.append(json.loads((await stream.content.readuntil(b"\n\n"))[len("data: ") :])["data"]["request_id"])
    assert ids[0] == same
    assert ids[1] != same
    for request_id in ids:
        stopped = await client.post("/v1/streaming_query/interrupt", json={"request_id": request_id})
        assert stopped.status == 200
    for stream, request_id in zip((first, second), ids, strict=True):
        assert parse_sse((await stream.read()).decode())[-1] == {
            "event": "interrupted",
            "data": {"request_id": request_id},
        }
    other = await client.post("/v1/streaming_query", json={"query": "c"}, headers={"X-Request-ID": "not-a-uuid"})
    started = json.loads((await other.content.readuntil(b"\n\n"))[len("data: ") :])["data"]["request_id"]
    assert started != "not-a-uuid"
    stopped = await client.post("/v1/streaming_query/interrupt", json={"request_id": started})
    assert stopped.status == 200
