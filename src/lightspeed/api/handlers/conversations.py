"""GET/DELETE/PUT /v1/conversations and /v2/conversations: a user's conversations and their history.

Only the owner sees, renames or deletes a conversation, unless the caller's roles allow
lightspeed-stack's "others' conversations" actions (an admin's do): `list_other_conversations`
lists everyone's, `read_`/`delete_other_conversations` read and delete them, and, as
lightspeed-stack has it, `query_other_conversations` renames them. Deleting removes the
history from the store; transcripts already written stay for the collector.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from lightspeed.access import User
from lightspeed.api.conversation_payloads import (
    ConversationData,
    ConversationDeleteResponse,
    ConversationDetails,
    ConversationResponse,
    ConversationsListResponse,
    ConversationsListResponseV2,
    ConversationTurn,
    ConversationUpdateRequest,
    ConversationUpdateResponse,
    Message,
)
from lightspeed.api.payloads import is_suid, parse_body
from lightspeed.api.state import SERVER, USER
from lightspeed.store.conversations import Conversation, Turn, check_access, conversation_not_found
from lightspeed_common.config_auth import Action
from lightspeed_common.errors import BadRequest
from lightspeed_common.http.middleware import read_body


def _json(model: object) -> web.Response:
    return web.json_response(model.model_dump(mode="json"))  # type: ignore[attr-defined]


def _conversation_id(request: web.Request) -> str:
    """The path's conversation id, 400 when it is not one lightspeed-stack takes (`is_suid`)."""
    value = request.match_info["conversation_id"]
    if not is_suid(value):
        raise BadRequest("Invalid conversation ID format", f"The conversation ID {value} has invalid format.")
    return value


_OTHERS = {
    "read": Action.READ_OTHERS_CONVERSATIONS,
    "delete": Action.DELETE_OTHERS_CONVERSATIONS,
    "update": Action.QUERY_OTHERS_CONVERSATIONS,
}


async def _allowed(request: web.Request, action: str) -> tuple[User, str, Conversation | None]:
    """The user, the conversation id, and the conversation when it exists and the user may `action` it."""
    server = request.app[SERVER]
    user = request[USER]
    conversation_id = _conversation_id(request)
    found = await server.store.get(conversation_id)
    others = user.may(_OTHERS[action])
    check_access(found, user.user_id, server.hasher(user.user_id), others=others, action=action)
    return user, conversation_id, found


async def _own(request: web.Request) -> list[Conversation]:
    """The caller's conversations (everyone's, to a caller allowed to list others'), most recent first."""
    server = request.app[SERVER]
    user = request[USER]
    return await server.store.list_for(
        None if user.may(Action.LIST_OTHERS_CONVERSATIONS) else server.hasher(user.user_id)
    )


async def list_v1(request: web.Request) -> web.Response:
    found = await _own(request)
    details = [
        ConversationDetails(
            conversation_id=c.conversation_id,
            created_at=c.created_at or None,
            last_message_at=c.last_message_at,
            message_count=c.message_count,
            last_used_model=c.last_used_model,
            last_used_provider=c.last_used_provider,
            topic_summary=c.topic_summary,
        )
        for c in found
    ]
    return _json(ConversationsListResponse(conversations=details))


def _timestamp(conversation: Conversation) -> float:
    moment = conversation.last_message_at or conversation.created_at
    return datetime.fromisoformat(moment).timestamp() if moment else 0.0


async def list_v2(request: web.Request) -> web.Response:
    found = await _own(request)
    data = [
        ConversationData(
            conversation_id=c.conversation_id, topic_summary=c.topic_summary, last_message_timestamp=_timestamp(c)
        )
        for c in found
    ]
    return _json(ConversationsListResponseV2(conversations=data))


def _turn(turn: Turn) -> ConversationTurn:
    return ConversationTurn(
        messages=[Message(content=turn.question, type="user"), Message(content=turn.answer, type="assistant")],
        provider=turn.provider,
        model=turn.model,
        started_at=turn.started_at.isoformat(),
        completed_at=turn.completed_at.isoformat(),
    )


async def get_conversation(request: web.Request) -> web.Response:
    _, conversation_id, found = await _allowed(request, "read")
    if found is None:
        raise conversation_not_found(conversation_id)
    turns = await request.app[SERVER].store.turns(conversation_id)
    return _json(ConversationResponse(conversation_id=conversation_id, chat_history=[_turn(t) for t in turns]))


async def delete_conversation(request: web.Request) -> web.Response:
    _, conversation_id, found = await _allowed(request, "delete")
    deleted = found is not None and await request.app[SERVER].store.delete(conversation_id)
    response = "Conversation deleted successfully" if deleted else "Conversation not found"
    return _json(
        ConversationDeleteResponse(conversation_id=conversation_id, deleted=deleted, response=response, success=True)
    )


async def update_conversation(request: web.Request) -> web.Response:
    _, conversation_id, found = await _allowed(request, "update")
    body = parse_body(ConversationUpdateRequest, await read_body(request))
    if found is None or not await request.app[SERVER].store.set_topic(conversation_id, body.topic_summary):
        raise conversation_not_found(conversation_id)
    return _json(
        ConversationUpdateResponse(
            conversation_id=conversation_id, success=True, message="Topic summary updated successfully"
        )
    )
