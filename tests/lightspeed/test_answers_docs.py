"""The local provider over this repository's own docs/, as `make run` serves it: the questions a new
user asks get short answers that contain the fact, with citations, through the HTTP API."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from lightspeed.answers.chunking import PATH_SEPARATOR, split_document
from lightspeed.answers.index_cache import CACHE_DIR
from lightspeed.answers.providers.local import NO_ANSWER
from lightspeed.answers.retrieval import read_documents
from lightspeed.api.state import CONFIG, SERVER
from tests.conftest import ClientFactory, ConfigFactory
from tests.lightspeed.test_query import parse_sse

# The first test to ask for `docs_index` in a run embeds docs/: 30 s on a quiet machine, past the suite's
# 120 s per-test timeout on a loaded one.
pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = REPO / "bench" / "answers_questions.yaml"
CORPUS = REPO / "bench" / "answers_corpus"


@pytest.fixture
async def docs_client(make_client: ClientFactory, make_config: ConfigFactory, docs_index: Path) -> TestClient[Any, Any]:
    """An app answering from docs/, started from the run's index of docs/ (`docs_index`): docs/ is embedded
    once per run, not by each test."""
    config = make_config(answers={"local": {"documents_dir": str(REPO / "docs")}})
    cache = config.service.state_dir / CACHE_DIR
    await asyncio.to_thread(shutil.copytree, docs_index, cache)
    return await make_client(config)


async def ask(client: TestClient[Any, Any], query: str, conversation_id: str | None = None) -> dict[str, Any]:
    body = {"query": query} | ({"conversation_id": conversation_id} if conversation_id else {})
    resp = await client.post("/v1/query", json=body)
    assert resp.status == 200, await resp.text()
    answer: dict[str, Any] = await resp.json()
    return answer


@pytest.mark.parametrize(
    ("question", "fact", "citation"),
    [
        ("How do I enable feedback?", "feedback_enabled: true", "configuration.md › user_data_collection"),
        (
            "What does the collector do when the ingress is down?",
            "exponential backoff",
            "collector.md › How a record travels",
        ),
        ("How do I start the server?", "make run", "running.md › Starting the server locally"),
        ("Where are transcripts stored?", "transcripts_storage", None),
    ],
)
async def test_a_new_users_questions_get_short_answers_with_the_fact(
    docs_client: TestClient[Any, Any], question: str, fact: str, citation: str | None
) -> None:
    answer = await ask(docs_client, question)
    response = answer["response"]
    assert fact in response
    assert len(response) < 1000  # a few sentences, not pages
    assert "Here is what the documentation says" not in response
    if citation:
        assert f"(Source: {citation})" in response
    # Each block is followed by its citation; the passages themselves stay in rag_chunks.
    assert response.endswith(")")
    assert "\n\n(Source: " in response
    assert len(answer["rag_chunks"]) == 3
    assert all(c["source"].endswith(".md") and 0 < c["score"] <= 1 for c in answer["rag_chunks"])
    assert {d["doc_url"] for d in answer["referenced_documents"]} == {c["source"] for c in answer["rag_chunks"]}


@pytest.mark.parametrize(
    ("query", "section"),
    [
        ("feedback_enabled default", "configuration.md › user_data_collection"),
        ("max_batch_files", "collector.md › Configuration"),
    ],
)
async def test_an_exact_config_key_is_found_where_the_embeddings_alone_miss_it(
    docs_client: TestClient[Any, Any], query: str, section: str
) -> None:
    index = docs_client.app[SERVER].answers.index
    assert (await ask(docs_client, query))["rag_chunks"][0]["content"] in {
        p.text for p in index.passages if p.section == section
    }
    dense = index._passage_vectors @ index.embedder.encode([query])[0]
    assert index.passages[int(dense.argmax())].section != section


async def test_an_off_topic_question_is_refused(docs_client: TestClient[Any, Any]) -> None:
    answer = await ask(docs_client, "What is a good recipe for sourdough bread?")
    assert answer["response"] == NO_ANSWER
    assert answer["rag_chunks"] == []
    assert answer["referenced_documents"] == []


async def test_streaming_sends_the_same_answer_in_tokens(docs_client: TestClient[Any, Any]) -> None:
    question = "What does the collector do when the ingress is down?"
    whole = (await ask(docs_client, question))["response"]
    resp = await docs_client.post("/v1/streaming_query", json={"query": question})
    events = parse_sse(await resp.text())
    tokens = [e["data"]["token"] for e in events if e["event"] == "token"]
    assert len(tokens) > 10
    assert "".join(tokens) == whole
    assert next(e for e in events if e["event"] == "turn_complete")["data"]["token"] == whole


async def test_a_follow_up_answers_about_what_it_refers_to(docs_client: TestClient[Any, Any]) -> None:
    """ "How do I turn it off?" after a question about feedback is answered about feedback."""
    alone = await ask(docs_client, "How do I turn it off?")
    first = await ask(docs_client, "How do I enable feedback?")
    follow_up = await ask(docs_client, "How do I turn it off?", first["conversation_id"])
    assert "/v1/feedback/status" in follow_up["response"]
    assert "/v1/feedback/status" not in alone["response"]


async def test_a_restart_reads_the_index_from_the_state_directory(
    make_client: ClientFactory, docs_client: TestClient[Any, Any]
) -> None:
    """The index is cached under the state directory: the vectors of every document, one file each,
    and the lexical index; a second app on the same state directory answers the same."""
    config = docs_client.app[CONFIG]
    cache = config.service.state_dir / CACHE_DIR
    assert len(list(cache.glob("*/*.npz"))) == len(read_documents(REPO / "docs"))
    assert len(list(cache.glob("lexical-*"))) == 1
    question = "How do I enable feedback?"
    before = await ask(docs_client, question)
    again = await make_client(config)
    assert (await ask(again, question))["response"] == before["response"]


def test_the_evaluation_questions_point_at_real_sections_and_facts() -> None:
    """bench/answers_questions.yaml stays true to its corpus, the frozen copy of docs/ the evaluation
    asks it over (bench/answers_corpus/): at least 60 questions, 10 the docs cannot answer, and every
    other names sections that exist and a fact one of them states."""
    entries = yaml.safe_load(QUESTIONS.read_text(encoding="utf-8"))
    assert len(entries) >= 60
    assert sum(1 for e in entries if e["section"] is None) == 10
    passages = [p for d in read_documents(CORPUS) for p in split_document(d.text, d.source, 10_000)]
    by_section: dict[str, str] = {}
    for p in passages:
        key = PATH_SEPARATOR.join([p.source, p.section.split(PATH_SEPARATOR)[-1]])
        by_section[key] = by_section.get(key, "") + "\n" + p.text

    def norm(text: str) -> str:
        return " ".join(text.replace("`", "").lower().split())

    for entry in entries:
        if entry["section"] is None:
            continue
        sections = [entry["section"]] if isinstance(entry["section"], str) else entry["section"]
        facts = [entry["fact"]] if isinstance(entry["fact"], str) else entry["fact"]
        assert all(s in by_section for s in sections), (entry["q"], sections)
        assert any(norm(f) in norm(by_section[s]) for f in facts for s in sections), (entry["q"], facts)
