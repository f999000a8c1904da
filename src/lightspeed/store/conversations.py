"""Conversations with their history: who owns each one, and its turns.

`ConversationStore` is the protocol the handlers use; `store.StateStore`
implements it (SQLite on one host, PostgreSQL for several). What a turn keeps:
the question as the records keep it (redacted), the answer, the model and
provider, when it started and completed, and each attachment's type, content
type and size (never its content).

The ownership rule is here too: a conversation belongs to the user hash that
began it; an unknown one is 404 and someone else's 403 (lightspeed-stack's
texts), except that an admin may read, rename or delete another's.

Deleting a conversation removes its history; transcripts already written to
`transcripts_storage` stay where the collector expects them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from lightspeed_common.errors import Forbidden, NotFound

TOPIC_CHARS = 100
NO_PERMISSION = "User does not have permission to perform this action"


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

    async def add_turn(self, conversation_id: str, owner: str, turn: Turn, *, topic: bool = True) -> None:
        """Append a turn, creating the conversation (owned by `owner`) if it is new; with `topic`, one
        without a topic summary takes this turn's question's first line."""

    async def get(self, conversation_id: str) -> Conversation | None: ...

    async def turns(self, conversation_id: str) -> list[Turn]: ...

    async def list_for(self, owner: str | None) -> list[Conversation]:
        """The owner's conversations (None: everyone's), most recent message first."""

    async def delete(self, conversation_id: str) -> bool: ...

    async def erase_owner(self, owner: str) -> tuple[int, int]:
        """Delete every conversation of `owner` with its turns: (conversations, turns) removed."""

    async def set_topic(self, conversation_id: str, topic_summary: str) -> bool: ...

    async def close(self) -> None: ...


def topic_of(question: str) -> str:
    """A new conversation's topic summary: its first question's first line, shortened."""
    line = question.strip().splitlines()[0] if question.strip() else ""
    return line if len(line) <= TOPIC_CHARS else line[: TOPIC_CHARS - 1].rstrip() + "…"


def conversation_not_found(conversation_id: str) -> NotFound:
    return NotFound("Conversation not found", f"Conversation with ID {conversation_id} does not exist")


def check_access(found: Conversation | None, user_id: str, user_hash: str, *, others: bool, action: str) -> None:
    """403 when `found` is someone else's and the caller may not `action` others' (`others`); an
    unknown conversation passes."""
    if found is not None and found.owner != user_hash and not others:
        cause = f"User {user_id} does not have permission to {action} conversation with ID {found.conversation_id}"
        raise Forbidden(NO_PERMISSION, cause)


async def check_owner(
    store: ConversationStore,
    conversation_id: str,
    user_id: str,
    user_hash: str,
    action: str = "read",
    *,
    others: bool = False,
) -> None:
    """What a question or a feedback about a conversation needs: 404 for an unknown one, 403 for
    someone else's unless `others` (the caller may continue others' conversations; a feedback is
    always its owner's to give). `action` words the 403 as lightspeed-stack does: "read" for a
    question, "submit feedback for" for a feedback."""
    owner = await store.owner(conversation_id)
    if owner is None:
        raise conversation_not_found(conversation_id)
    if owner != user_hash and not others:
        cause = f"User {user_id} does not have permission to {action} conversation with ID {conversation_id}"
        raise Forbidden(NO_PERMISSION, cause)
