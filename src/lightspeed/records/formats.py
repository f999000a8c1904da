"""What is in a feedback and a transcript record: lightspeed-stack's formats, so its pipeline reads ours."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class GivenFeedback:
    """What a user sends as feedback, before redaction."""

    conversation_id: str
    user_question: str
    llm_response: str
    sentiment: int | None
    user_feedback: str | None
    categories: list[str] | None


@dataclass(frozen=True, kw_only=True)
class Feedback(GivenFeedback):
    """A feedback record: the given feedback redacted, its author's hash, and when it came."""

    user_hash: str
    timestamp: datetime = field(default_factory=_utc_now)

    def to_record(self) -> dict[str, Any]:
        return {
            "user_id": self.user_hash,
            # lightspeed-stack writes str(datetime): "2025-08-04 16:59:52.004143+00:00".
            "timestamp": str(self.timestamp),
            "conversation_id": self.conversation_id,
            "user_question": self.user_question,
            "llm_response": self.llm_response,
            "sentiment": self.sentiment,
            "user_feedback": self.user_feedback,
            "categories": self.categories,
        }


@dataclass(frozen=True)
class Transcript:
    user_hash: str
    conversation_id: str
    provider: str
    model: str
    query_provider: str | None
    query_model: str | None
    redacted_query: str
    llm_response: str
    rag_chunks: list[dict[str, Any]]
    truncated: bool
    attachments: list[dict[str, Any]]
    query_is_valid: bool = True
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_results: list[dict[str, Any]] = field(default_factory=list)
    timestamp: datetime = field(default_factory=_utc_now)

    def to_record(self) -> dict[str, Any]:
        return {
            "metadata": {
                "provider": self.provider,
                "model": self.model,
                "query_provider": self.query_provider,
                "query_model": self.query_model,
                "user_id": self.user_hash,
                "conversation_id": self.conversation_id,
                "timestamp": self.timestamp.isoformat(),
            },
            "redacted_query": self.redacted_query,
            "query_is_valid": self.query_is_valid,
            "llm_response": self.llm_response,
            "rag_chunks": self.rag_chunks,
            "truncated": self.truncated,
            "attachments": self.attachments,
            "tool_calls": self.tool_calls,
            "tool_results": self.tool_results,
        }
