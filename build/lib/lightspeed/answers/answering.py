"""Retrieval plus the configured provider: what the query handlers talk to."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from lightspeed.answers.providers.base import AnswerProvider
from lightspeed.answers.retrieval import Hit, PassageIndex
from lightspeed_common.config import LocalProviderConfig
from lightspeed_common.errors import NotFound


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
        if provider != self.provider.name or model not in self.provider.models:
            raise NotFound("Model not found", f"Model '{model}' from provider '{provider}' is not available")
        return ModelChoice(provider, model)

    def available(self) -> Sequence[ModelChoice]:
        return [ModelChoice(self.provider.name, m) for m in self.provider.models]

    async def retrieve(self, query: str) -> list[Hit]:
        """The best passages for `query`; embedding runs on a thread."""
        return await asyncio.to_thread(self.index.search, query, self._top_k, self._min_score)
