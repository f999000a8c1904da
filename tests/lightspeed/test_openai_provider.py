"""The openai provider against a small OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ClientFactory
from tests.fake_llm import ANSWER_PIECES, FakeLLM, free_port, openai_config
from tests.lightspeed.test_query import parse_sse
from tests.support import json_files, transcripts_written


async def test_openai_answers_with_passages_as_context(
    make_client: ClientFactory, make_config: Any, llm: tuple[FakeLLM, str], tmp_path: Path
) -> None:
    """The question and the retrieved passages reach the endpoint; its answer and usage come back."""
    fake, url = llm
    key_file = tmp_path / "key"
    key_file.write_text("sk-test-key\n")
    config = openai_config(make_config, url, api_key_file=str(key_file))
    client = await make_client(config)
    resp = await client.post("/v1/query", json={"query": "How do I start the server?", "system_prompt": "Be brief."})
    assert resp.status == 200
    body = await resp.json()
    assert body["response"] == "Use make run."
    assert (body["input_tokens"], body["output_tokens"]) == (42, 4)
    request = fake.requests[0]
    assert request["model"] == "tiny"
    assert request["stream"] is False
    system, user = request["messages"]
    assert system["role"] == "system"
    assert system["content"].startswith("Be brief.")
    assert "make run" in system["content"]  # the best passage is in the context
    assert user == {"role": "user", "content": "How do I start the server?"}
    assert fake.headers[0]["Authorization"] == "Bearer sk-test-key"
    await transcripts_written(client)
    record = json.loads(json_files(config.user_data_collection.transcripts_storage)[0].read_text())
    assert record["metadata"]["provider"] == "openai"
    assert record["metadata"]["model"] == "tiny"


async def test_openai_streaming(make_client: ClientFactory, make_config: Any, llm: tuple[FakeLLM, str]) -> None:
    """Deltas become token events in order; turn_complete holds their concatenation."""
    fake, url = llm
    client = await make_client(openai_config(make_config, url))
    resp = await client.post("/v1/streaming_query", json={"query": "How do I start the server?"})
    events = parse_sse(await resp.text())
    assert [e["data"]["token"] for e in events if e["event"] == "token"] == ANSWER_PIECES
    assert events[-2]["data"]["token"] == "Use make run."
    assert fake.requests[0]["stream"] is True
    assert "Authorization" not in fake.headers[0]


@pytest.mark.parametrize(
    ("status", "expected"),
    [(500, 503), (503, 503), (429, 503), (401, 502), (404, 502), (400, 502)],
)
async def test_openai_errors_map_to_503_or_502(
    make_client: ClientFactory, make_config: Any, llm: tuple[FakeLLM, str], status: int, expected: int
) -> None:
    """Unreachable or overloaded is 503, an error answer is 502, each with the upstream status as cause."""
    fake, url = llm
    fake.status = status
    config = openai_config(make_config, url)
    client = await make_client(config)
    for route in ("/v1/query", "/v1/streaming_query"):
        resp = await client.post(route, json={"query": "start"})
        assert resp.status == expected
        detail = (await resp.json())["detail"]
        assert f"HTTP {status}" in detail["cause"]
    assert json_files(config.user_data_collection.transcripts_storage) == []


async def test_openai_malformed_reply_is_502(
    make_client: ClientFactory, make_config: Any, llm: tuple[FakeLLM, str]
) -> None:
    fake, url = llm
    client = await make_client(openai_config(make_config, url))
    for body in ('{"choices": []}', "not json at all"):
        fake.body = body
        resp = await client.post("/v1/query", json={"query": "start"})
        assert resp.status == 502
        assert (await resp.json())["detail"]["response"] == "The answer provider returned an error"


async def test_openai_unreachable_is_503_and_unready(make_client: ClientFactory, make_config: Any) -> None:
    """Nothing listening: queries are 503 and readiness says why."""
    client = await make_client(openai_config(make_config, f"http://127.0.0.1:{free_port()}/v1"))
    resp = await client.post("/v1/query", json={"query": "start"})
    assert resp.status == 503
    assert (await resp.json())["detail"]["response"] == "Unable to connect to the answer provider"
    ready = await client.get("/readiness")
    assert ready.status == 503
    assert [p["provider_id"] for p in (await ready.json())["providers"]] == ["openai"]


async def test_openai_timeout_is_503(make_client: ClientFactory, make_config: Any, llm: tuple[FakeLLM, str]) -> None:
    fake, url = llm
    fake.delay = 2.0
    client = await make_client(openai_config(make_config, url, timeout_seconds=0.2))
    resp = await client.post("/v1/query", json={"query": "start"})
    assert resp.status == 503
    assert (await resp.json())["detail"]["cause"] == "the request timed out"


async def test_openai_models_are_listed_and_ready(
    make_client: ClientFactory, make_config: Any, llm: tuple[FakeLLM, str]
) -> None:
    _, url = llm
    client = await make_client(openai_config(make_config, url))
    assert (await client.get("/readiness")).status == 200
    models = (await (await client.get("/v1/models")).json())["models"]
    assert [(m["identifier"], m["model_type"]) for m in models] == [
        ("openai/tiny", "llm"),
        ("sentence-transformers/all-MiniLM-L6-v2", "embedding"),
    ]
    ok = await client.post("/v1/query", json={"query": "start", "provider": "openai", "model": "tiny"})
    assert ok.status == 200
