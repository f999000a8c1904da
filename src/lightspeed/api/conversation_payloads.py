"""Bodies of the conversation API, as lightspeed-stack's /v1 and /v2 conversations endpoints have them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from lightspeed.api.payloads import Body


class ConversationDetails(BaseModel):
    conversation_id: str
    created_at: str | None = None
    last_message_at: str | None = None
    message_count: int | None = None
    last_used_model: str | None = None
    last_used_provider: str | None = None
    topic_summary: str | None = None


class ConversationsListResponse(BaseModel):
    conversations: list[ConversationDetails]


class ConversationData(BaseModel):
    conversation_id: str
    topic_summary: str | None
    last_message_timestamp: float


class ConversationsListResponseV2(BaseModel):
    conversations: list[ConversationData]


class Message(BaseModel):
    content: str
    type: Literal["user", "assistant", "system", "developer"]


class ConversationTurn(BaseModel):
    messages: list[Message] = []
    tool_calls: list[dict[str, object]] = []
    tool_results: list[dict[str, object]] = []
    provider: str
    model: str
    started_at: str
    completed_at: str


class ConversationResponse(BaseModel):
    conversation_id: str
    chat_history: list[ConversationTurn]


class ConversationDeleteResponse(BaseModel):
    conversation_id: str
    deleted: bool
    response: str
    success: bool


class ConversationUpdateRequest(Body):
    topic_summary: str = Field(min_length=1, max_length=1000)


class ConversationUpdateResponse(BaseModel):
    conversation_id: str
    success: bool
    message: str
