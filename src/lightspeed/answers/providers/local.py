"""The `local` provider: answers made of the documents' own sentences, no network.

The sentences were chosen with the retrieval (answers/extract.py); each group is
followed by its section's heading path. It counts tokens with the embedding
model's tokenizer, the only tokenizer it has.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Callable, Sequence

from lightspeed.answers.extract import Excerpt
from lightspeed.answers.providers.base import Completion, Question, Usage, user_text

# Up to this many characters (question and answer together), counting their tokens takes well under a
# millisecond (about 0.4 ms for a typical 1,500-character answer): it is done on the event loop, which is
# cheaper than the wake-ups of a thread hop. Longer texts are counted on a thread.
INLINE_CHARS = 4096
NO_ANSWER = (
    "I could not find anything about that in the documentation I have. "
    "Try asking with other words, or name the command, file or setting you mean."
)
NO_IMAGES = (
    "I cannot read images: this provider answers from text only, so I did not look at the attached {what}. "
    "Describe what it shows, or paste the text it contains, and ask again."
)


def compose(excerpts: Sequence[Excerpt]) -> str:
    """The answer's text: each excerpt, then the section it comes from."""
    return "\n\n".join(f"{e.text}\n\n(Source: {e.citation})" for e in excerpts)


class LocalProvider:
    name = "local"
    models: Sequence[str] = ("extractive",)

    def __init__(self, passages_available: int, count_tokens: Callable[[str], int]) -> None:
        self._passages = passages_available
        self._count_tokens = count_tokens

    def answer_text(self, question: Question) -> str:
        images = sum(a.is_image for a in question.attachments)
        parts = [NO_IMAGES.format(what="image" if images == 1 else f"{images} images")] if images else []
        parts.append(compose(question.excerpts) if question.excerpts else NO_ANSWER)
        return "\n\n".join(parts)

    def _count(self, asked: str, answered: str) -> Usage:
        return Usage(self._count_tokens(asked), self._count_tokens(answered))

    async def _usage(self, question: Question, text: str) -> Usage:
        asked = user_text(question)
        if len(asked) + len(text) <= INLINE_CHARS:
            return self._count(asked, text)
        return await asyncio.to_thread(self._count, asked, text)

    async def complete(self, question: Question) -> Completion:
        text = self.answer_text(question)
        usage = await self._usage(question, text)
        return Completion(text, usage.input_tokens, usage.output_tokens)

    async def stream(self, question: Question, usage: Usage) -> AsyncGenerator[str, None]:
        text = self.answer_text(question)
        counted = await self._usage(question, text)
        usage.input_tokens, usage.output_tokens = counted.input_tokens, counted.output_tokens
        # Words with the whitespace that follows them, so the pieces concatenate exactly.
        for piece in re.findall(r"\S+\s*|\s+", text):
            yield piece
            await asyncio.sleep(0)

    async def unready_reason(self) -> str | None:
        return None if self._passages else "the local provider has no documents to answer from"

    async def close(self) -> None:
        return None
