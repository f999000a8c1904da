"""The `local` provider: answers assembled from the best retrieved passages, no network."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Sequence

from lightspeed.answers.providers.base import Completion, Question, count_tokens, input_tokens

NO_ANSWER = (
    "I could not find anything about that in the documentation I have. "
    "Try asking with other words, or name the command, file or setting you mean."
)


class LocalProvider:
    name = "local"
    models: Sequence[str] = ("extractive",)

    def __init__(self, passages_available: int) -> None:
        self._passages = passages_available

    def answer_text(self, question: Question) -> str:
        if not question.hits:
            return NO_ANSWER
        parts = ["Here is what the documentation says:"]
        for hit in question.hits:
            parts.append(f"{hit.passage.text}\n\n(Source: {hit.passage.title}, {hit.passage.source})")
        return "\n\n".join(parts)

    async def complete(self, question: Question) -> Completion:
        text = self.answer_text(question)
        return Completion(text, input_tokens(question), count_tokens(text))

    async def stream(self, question: Question) -> AsyncGenerator[str, None]:
        # Words with the whitespace that follows them, so the pieces concatenate exactly.
        for piece in re.findall(r"\S+\s*|\s+", self.answer_text(question)):
            yield piece
            await asyncio.sleep(0)

    async def unready_reason(self) -> str | None:
        return None if self._passages else "the local provider has no documents to answer from"

    async def close(self) -> None:
        return None
