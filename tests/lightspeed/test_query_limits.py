"""What one question may cost, and what one user may hold: issue 23, items 1 and 2."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from lightspeed.api.app import create_app
from lightspeed.models.embedding import SentenceTransformerEmbedder
from tests.conftest import ClientFactory, ConfigFactory
from tests.support import json_files, liveness_latencies_during, loop_pause_bound, transcripts_written, until

HUGE = "hello " * 150_000  # ~900 KB, under the 1 MiB body limit


async def timed_query(client: Any, user: str, query: str) -> tuple[int, float, dict[str, Any]]:
    started = time.perf_counter()
    resp = await client.post(f"/v1/query?user_id={user}", json={"query": query})
    return resp.status, time.perf_counter() - started, await resp.json()


async def test_a_prompt_longer_than_the_limit_is_413_as_lightspeed_stack_answers_it(
    make_client: ClientFactory, make_config: ConfigFactory
) -> None:
    """Item 23.1: six ~900 KB questions are refused at once (413 "Prompt is too long"), and another
    user's question answers as quickly as it did before them."""
    client = await make_client(make_config(answers={}))
    _, baseline, _ = await timed_query(client, "alice", "How do I start the server?")
    refused = await asyncio.gather(*(timed_query(client, "mallory", HUGE) for _ in range(6)))
    status, elapsed, body = await timed_query(client, "alice", "How do I start the server?")
    assert {r[0] for r in refused} == {413}
    detail = refused[0][2]["detail"]
    assert detail["response"] == "Prompt is too long"
    assert detail["cause"] == "The prompt exceeds the maximum allowed length: 900000 characters, at most 32000."
    assert status == 200, body
    assert elapsed < max(2.0, 10 * baseline)


GATED = "4242424242"  # digits only: typo repair leaves the marker as it is


class GatedEmbedder:
    """The real model, except that a question with GATED in it waits at the gate inside encode()."""

    def __init__(self, real: SentenceTransformerEmbedder) -> None:
        self.real = real
        self.name, self.dimension = real.name, real.dimension
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.inside = self.most_inside = 0

    def encode(self, texts: Sequence[str]) -> Any:
        if any(GATED in text for text in texts):
            with self.lock:
                self.inside += 1
                self.most_inside = max(self.most_inside, self.inside)
            self.gate.wait(120)
            with self.lock:
                self.inside -= 1
        return self.real.encode(texts)

    def token_counter(self) -> Any:
        return self.real.token_counter()


async def test_one_user_holds_at_most_two_retrieval_threads(
    aiohttp_client: Any, embedder: SentenceTransformerEmbedder, make_config: ConfigFactory
) -> None:
    """Item 23.1: six questions of one user that do not finish (held inside the embedding) take two of the
    four retrieval threads; another user's question is answered meanwhile, and then all six are."""
    gated = GatedEmbedder(embedder)
    client = await aiohttp_client(create_app(make_config(), embedder=gated))
    held = [asyncio.ensure_future(timed_query(client, "mallory", f"start {GATED} server")) for _ in range(6)]
    try:

        async def two_at_the_gate() -> bool:
            return gated.inside == 2

        await until(two_at_the_gate, "two of mallory's questions at the gate")
        status, _, body = await timed_query(client, "alice", "How do I start the server?")
        assert status == 200, body
        assert "make run" in body["response"]
        assert not any(task.done() for task in held)
    finally:
        gated.gate.set()
    assert [r[0] for r in await asyncio.gather(*held)] == [200] * 6
    assert gated.most_inside == 2


@pytest.mark.parametrize(
    ("attachments", "status", "response"),
    [
        (17, 422, "Invalid attribute value"),  # one more than max_attachments (16)
        (3, 413, "File too large"),  # 3 x 100 KB, over max_attachments_bytes (256 KiB)
    ],
)
async def test_attachments_are_limited_in_number_and_total_size(
    make_client: ClientFactory, make_config: ConfigFactory, attachments: int, status: int, response: str
) -> None:
    client = await make_client(make_config(answers={}))
    content = "x" * (100_000 if attachments == 3 else 10)
    body = {
        "query": "How do I start the server?",
        "attachments": [
            {"attachment_type": "log", "content_type": "text/plain", "content": content} for _ in range(attachments)
        ],
    }
    resp = await client.post("/v1/query?user_id=alice", json=body)
    assert resp.status == status
    assert (await resp.json())["detail"]["response"] == response


async def test_many_attachments_are_redacted_off_the_event_loop(
    make_client: ClientFactory, make_config: ConfigFactory
) -> None:
    """Item 23.2: 54 attachments of 16 KiB (each under the inline limit, together 864 KiB) are redacted
    in the worker process: /liveness answers within 100 ms throughout, and each is redacted."""
    client = await make_client(
        make_config(
            answers={"max_attachments": 64, "max_attachments_bytes": 1_000_000},
            service={"max_request_bytes": 2_000_000},
        )
    )
    # Secrets assigned in a log: about 10 ms of rules per attachment, half a second for the 54 on the loop.
    content = ("password=hunter2 token: abcdefgh " * 500)[: 16 * 1024 - 20] + " mail a@b.io"
    body = {
        "query": "How do I start the server?",
        "attachments": [{"attachment_type": "log", "content_type": "text/plain", "content": content}] * 54,
    }
    bound = await loop_pause_bound(client)
    request = asyncio.ensure_future(client.post("/v1/query?user_id=alice", json=body))
    latencies = await liveness_latencies_during(client, request)
    assert (await request).status == 200
    assert latencies
    assert max(latencies) < bound, (max(latencies), bound)
    await transcripts_written(client)
    transcripts = json_files(make_config().user_data_collection.transcripts_storage)
    recorded = json.loads(transcripts[0].read_text())["attachments"]
    assert len(recorded) == 54
    assert all(a["content"].endswith("mail [REDACTED_EMAIL]") for a in recorded)
    assert all("hunter2" not in a["content"] for a in recorded)


class CountingEmbedder:
    """The real model; its token counter notes whether each count ran on the event loop's thread."""

    def __init__(self, real: SentenceTransformerEmbedder) -> None:
        self.real = real
        self.name, self.dimension = real.name, real.dimension
        self.on_loop: list[bool] = []

    def encode(self, texts: Sequence[str]) -> Any:
        return self.real.encode(texts)

    def token_counter(self) -> Any:
        count = self.real.token_counter()

        def counted(text: str) -> int:
            self.on_loop.append(threading.current_thread() is threading.main_thread())
            return count(text)

        return counted


async def test_short_texts_are_counted_on_the_loop_and_long_ones_on_a_thread(
    aiohttp_client: Any, embedder: SentenceTransformerEmbedder, make_config: ConfigFactory
) -> None:
    """A usual question and answer are counted on the event loop (well under a millisecond: cheaper than a
    thread hop); a question with a long attachment, which would hold the loop, is counted on a thread. The
    counts are the tokenizer's either way."""
    counting = CountingEmbedder(embedder)
    count = embedder.token_counter()
    client = await aiohttp_client(create_app(make_config(), embedder=counting))
    resp = await client.post("/v1/query?user_id=alice", json={"query": "How do I start the server?"})
    body = await resp.json()
    assert (body["input_tokens"], body["output_tokens"]) == (7, count(body["response"]))
    assert counting.on_loop == [True, True]
    log = "error: disk full on node 7\n" * 400  # 10,800 characters
    attachment = {"attachment_type": "log", "content_type": "text/plain", "content": log}
    resp = await client.post("/v1/query?user_id=alice", json={"query": "Why?", "attachments": [attachment]})
    body = await resp.json()
    assert body["input_tokens"] == count(f"Why?\n\n[log, text/plain]\n{log}")
    assert counting.on_loop == [True, True, False, False]
