"""Conversations with their history: who owns each one, and its turns.

`ConversationStore` is the protocol the handlers use; `store.StateStore`
implements it (SQLite on one host, PostgreSQL for several). What a turn keeps:
the question as the records keep it (redacted), the answer, the model and
provider, when it started and completed, and each attachment's type, content
type and size (never its content).

Deleting a conversation removes its history; transcripts already written to
`transcripts_storage` stay where the collector expects them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

TOPIC_CHARS = 100


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str
    model: str
    provider: str
    started_at: datetime
    completed_at: datetime
    # {"attachment_type", "content_type", "size"} per attachment: never the content.
    attachments: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    owner: str
    created_at: str
    last_message_at: str | None
    message_count: int
    topic_summary: str | None
    last_used_model: str | None
    last_used_provider: str | None


class ConversationStore(Protocol):
    """What the handlers need; every method is safe to call from the event loop."""

    async def owner(self, conversation_id: str) -> str | None: ...

    async def add_turn(self, conversation_id: str, owner: str, turn: Turn) -> None:
        """Append a turn, creating the conversation (owned by `owner`) if it is new."""

    async def get(self, conversation_id: str) -> Conversation | None: ...

    async def turns(self, conversation_id: str) -> list[Turn]: ...

    async def list_for(self, owner: str) -> list[Conversation]:
        """The owner's conversations, most recent message first."""

    async def delete(self, conversation_id: str) -> bool: ...

    async def set_topic(self, conversation_id: str, topic_summary: str) -> bool: ...

    async def close(self) -> None: ...


def topic_of(question: str) -> str:
    """A new conversation's topic summary: its first question's first line, shortened."""
    line = question.strip().splitlines()[0] if question.strip() else ""
    return line if len(line) <= TOPIC_CHARS else line[: TOPIC_CHARS - 1].rstrip() + "…"
