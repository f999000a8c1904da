"""The answer provider interface."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol

from lightspeed.answers.retrieval import Hit

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """A provider-neutral token estimate (words and punctuation)."""
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class Attachment:
    attachment_type: str
    content_type: str
    content: str


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


def input_tokens(question: Question) -> int:
    """The token estimate of what the user sent: the query and its attachments."""
    return count_tokens(question.query) + sum(count_tokens(a.content) for a in question.attachments)


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

    def stream(self, question: Question) -> AsyncGenerator[str, None]:
        """Yield the answer in pieces; raises ApiError subclasses on failure."""
        ...

    async def unready_reason(self) -> str | None:
        """None when answers can be given, else why not."""
        ...

    async def close(self) -> None: ...
