"""The answer provider interface."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol

from lightspeed.answers.extract import Excerpt
from lightspeed.answers.retrieval import Hit

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """A provider-neutral token estimate (words and punctuation), for a provider that reports none."""
    return len(_TOKEN.findall(text))


IMAGE = "image"


@dataclass(frozen=True)
class Attachment:
    attachment_type: str
    content_type: str
    content: str  # text, or an image's base64
    size: int  # bytes: the text's UTF-8, or the decoded image

    @property
    def is_image(self) -> bool:
        return self.attachment_type == IMAGE

    def metadata(self) -> dict[str, str | int]:
        """What records and conversations keep of it: never the content itself."""
        return {"attachment_type": self.attachment_type, "content_type": self.content_type, "size": self.size}


@dataclass
class Usage:
    """Tokens in and out of one answer, as the provider counted them; a stream fills it as it ends."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Exchange:
    """An earlier turn of the conversation: what was asked and what was answered."""

    question: str
    answer: str


@dataclass(frozen=True)
class Question:
    query: str
    model: str
    system_prompt: str | None
    attachments: Sequence[Attachment]
    hits: Sequence[Hit]
    history: Sequence[Exchange] = ()
    excerpts: Sequence[Excerpt] = ()  # the sentences of the hits that answer the question best


def user_text(question: Question) -> str:
    """What the user sent as text: the query and each text attachment (images are not text)."""
    parts = [question.query]
    for attachment in question.attachments:
        if not attachment.is_image:
            parts.append(f"[{attachment.attachment_type}, {attachment.content_type}]\n{attachment.content}")
    return "\n\n".join(parts)


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int


class AnswerProvider(Protocol):
    """Produces an answer for a question whose passages were already retrieved."""

    name: str
    models: Sequence[str]

    async def complete(self, question: Question) -> Completion: ...

    def stream(self, question: Question, usage: Usage) -> AsyncGenerator[str, None]:
        """Yield the answer in pieces, filling `usage` by the end; raises ApiError subclasses on failure."""
        ...

    async def unready_reason(self) -> str | None:
        """None when answers can be given, else why not."""
        ...

    async def close(self) -> None: ...
