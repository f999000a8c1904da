"""Retrieval plus the configured provider: what the query handlers talk to."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lightspeed.answers.extract import Excerpt, excerpts
from lightspeed.answers.providers.base import AnswerProvider, Exchange
from lightspeed.answers.retrieval import DocumentIndex, Hit, Query
from lightspeed.models.embedding import Embedder
from lightspeed_common import tracing
from lightspeed_common.config import AnswersConfig
from lightspeed_common.errors import NotFound

# Words by which a follow-up refers back to the previous question ("where does it write them?").
_REFERS_BACK = re.compile(r"\b(it|its|that|this|those|these|they|them|there|one|ones|same)\b", re.IGNORECASE)


def _leans_on_earlier(question: str) -> bool:
    return bool(_REFERS_BACK.search(question)) or len(question.split()) <= 3


def retrieval_query(query: str, history: Sequence[Exchange]) -> Query:
    """What to retrieve for: a follow-up that refers back ("how do I turn it off?"), or is only a few
    words, is looked up with the earlier questions it leans on as context (at a lower weight, so
    its own words decide), back to the last question that stood on its own."""
    context: list[str] = []
    if _leans_on_earlier(query):
        for exchange in reversed(history[-3:]):
            context.insert(0, exchange.question)
            if not _leans_on_earlier(exchange.question):
                break
    return Query(query, "\n".join(context))


def recent_history(turns: Sequence[Exchange], max_chars: int) -> list[Exchange]:
    """The most recent turns whose questions and answers fit in `max_chars`, oldest first."""
    kept: list[Exchange] = []
    used = 0
    for exchange in reversed(turns):
        used += len(exchange.question) + len(exchange.answer)
        if used > max_chars:
            break
        kept.append(exchange)
    return kept[::-1]


@dataclass(frozen=True)
class ModelChoice:
    provider: str
    model: str


@dataclass(frozen=True)
class Found:
    hits: list[Hit]  # the passages, best first: rag_chunks, referenced_documents, an LLM's context
    excerpts: list[Excerpt]  # the sentences of them that answer the question (the local provider's answer)


class PerKeyLimit:
    """At most `limit` holders per key at once; the others wait. Keys are forgotten when unused."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def held(self, key: str) -> AsyncIterator[None]:
        semaphore, users = self._entries.setdefault(key, (asyncio.Semaphore(self._limit), [0]))
        users[0] += 1
        try:
            async with semaphore:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._entries[key]


class Answerer:
    def __init__(self, index: DocumentIndex, provider: AnswerProvider, answers: AnswersConfig) -> None:
        self.index = index
        self.provider = provider
        self._top_k = answers.local.top_k
        self._min_score = answers.local.min_score
        # Not the default executor: questions that fill it would hold up every other to_thread (file I/O).
        self._threads = ThreadPoolExecutor(answers.retrieval_threads, thread_name_prefix="retrieval")
        self._per_user = PerKeyLimit(answers.max_concurrent_per_user)

    def choose_model(self, provider: str | None, model: str | None) -> ModelChoice:
        """The default model, or the requested one if this server offers it (404 otherwise)."""
        if provider is None or model is None:
            return ModelChoice(self.provider.name, self.provider.models[0])
        if provider != self.provider.name or model not in self.provider.models:
            # lightspeed-stack's answer for a provider/model pair it does not serve, whichever part is unknown.
            raise NotFound("Model not found", f"Model with ID {model} does not exist")
        return ModelChoice(provider, model)

    @property
    def embedder(self) -> Embedder:
        return self.index.embedder

    def index_with(self, embedder: Embedder) -> DocumentIndex:
        """The documents indexed again with `embedder` (blocking: it embeds what the cache lacks)."""
        return self.index.with_embedder(embedder)

    def use(self, index: DocumentIndex) -> int:
        """Search `index` from now on: one assignment, so a query sees the old index or the new one."""
        self.index = index
        return len(index.passages)

    def available(self) -> Sequence[ModelChoice]:
        return [ModelChoice(self.provider.name, m) for m in self.provider.models]

    def find(self, query: Query) -> Found:
        """The best passages for `query` and the sentences that answer it (blocking: it embeds the query)."""
        index = self.index  # one index throughout, though an activation may replace it meanwhile
        retrieval = index.search(query, self._top_k, self._min_score)
        return Found(retrieval.hits, excerpts(index, retrieval))

    async def retrieve(self, query: Query, user: str) -> Found:
        """`find` on the retrieval threads, `user` holding at most max_concurrent_per_user of them."""
        async with self._per_user.held(user):
            with tracing.span("retrieval", **{"lightspeed.top_k": self._top_k}):
                return await asyncio.get_running_loop().run_in_executor(self._threads, self.find, query)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
