"""Retrieval plus the configured provider: what the query handlers talk to."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lightspeed.answers.providers.base import AnswerProvider, Exchange
from lightspeed.answers.retrieval import Hit, PassageIndex
from lightspeed_common.config import LocalProviderConfig
from lightspeed_common.errors import NotFound

# Words by which a follow-up refers back to the previous question ("where does it write them?").
_REFERS_BACK = re.compile(r"\b(it|its|that|this|those|these|they|them|there|one|ones|same)\b", re.IGNORECASE)


def retrieval_query(query: str, history: Sequence[Exchange]) -> str:
    """What to retrieve passages for: a follow-up that refers back, or is only a few words,
    is looked up together with the previous question, so "how do I change it?" finds what "it" was."""
    if history and (_REFERS_BACK.search(query) or len(query.split()) <= 3):
        return f"{history[-1].question}\n{query}"
    return query


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


class Answerer:
    def __init__(self, index: PassageIndex, provider: AnswerProvider, retrieval: LocalProviderConfig) -> None:
        self.index = index
        self.provider = provider
        self._top_k = retrieval.top_k
        self._min_score = retrieval.min_score

    def choose_model(self, provider: str | None, model: str | None) -> ModelChoice:
        """The default model, or the requested one if this server offers it (404 otherwise)."""
        if provider is None or model is None:
            return ModelChoice(self.provider.name, self.provider.models[0])
        if provider != self.provider.name:
            raise NotFound("Provider not found", f"Provider with ID {provider} does not exist")
        if model not in self.provider.models:
            raise NotFound("Model not found", f"Model with ID {model} does not exist")
        return ModelChoice(provider, model)

    def available(self) -> Sequence[ModelChoice]:
        return [ModelChoice(self.provider.name, m) for m in self.provider.models]

    async def retrieve(self, query: str) -> list[Hit]:
        """The best passages for `query`; embedding runs on a thread."""
        return await asyncio.to_thread(self.index.search, query, self._top_k, self._min_score)
