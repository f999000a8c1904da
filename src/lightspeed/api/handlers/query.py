"""POST /v1/query, POST /v1/streaming_query and its interrupt: HTTP in, a turn (lightspeed.turns), HTTP out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator
from typing import Any

import structlog
from aiohttp import web

from lightspeed.answers import markdown
from lightspeed.answers.providers.base import Attachment, Usage
from lightspeed.api.catalog_payloads import StreamingInterruptRequest
from lightspeed.api.payloads import parse_body
from lightspeed.api.query_payloads import QueryRequest
from lightspeed.api.state import SERVER, STREAMS, USER
from lightspeed.turns import Ask, PreparedTurn, Turns, rag_chunks, referenced_documents
from lightspeed_common.config_auth import Action
from lightspeed_common.errors import ApiError, Forbidden, NotFound
from lightspeed_common.http.keys import REQUEST_ID
from lightspeed_common.http.middleware import read_body

log = structlog.get_logger(__name__)
# lightspeed-stack's words for a model or provider in a request from a caller not allowed `model_override`.
MODEL_OVERRIDE_FORBIDDEN = Forbidden(
    "This instance does not permit overriding model/provider in the query request (missing permission: "
    "model_override). Please remove the model and provider fields from your request.",
    "User lacks model_override permission required to override model/provider.",
)


def _ask(body: QueryRequest) -> Ask:
    attachments = [Attachment(a.attachment_type, a.content_type, a.content, a.size) for a in body.attachments or ()]
    return Ask(
        body.query,
        body.conversation_id,
        body.provider,
        body.model,
        body.system_prompt,
        attachments,
        generate_topic_summary=bool(body.generate_topic_summary),  # null is false, as lightspeed-stack reads it
        vector_store_ids=body.vector_store_ids,
        shield_ids=body.shield_ids,
    )


async def prepare_turn(request: web.Request) -> tuple[QueryRequest, PreparedTurn]:
    server = request.app[SERVER]
    user = request[USER]
    body = parse_body(QueryRequest, await read_body(request))
    ask = _ask(body)
    server.turns.check_sizes(ask)  # before the attachments' own checks, as lightspeed-stack orders them
    for attachment in body.attachments or ():
        attachment.check()
    if (body.provider is not None or (body.model is not None and "/" in body.model)) and not user.may(
        Action.MODEL_OVERRIDE
    ):
        raise MODEL_OVERRIDE_FORBIDDEN
    others = user.may(Action.QUERY_OTHERS_CONVERSATIONS)
    return body, await server.turns.prepare(user.user_id, ask, others=others)


async def query(request: web.Request) -> web.Response:
    turns = request.app[SERVER].turns
    _, turn = await prepare_turn(request)
    completion = await turns.complete(turn, "/v1/query")
    await turns.finish(turn, completion.text, truncated=False)
    return web.json_response(
        {
            "conversation_id": turn.conversation_id,
            "response": completion.text,
            "rag_chunks": rag_chunks(turn.question.hits),
            "referenced_documents": referenced_documents(turn.question.hits),
            "truncated": False,
            "input_tokens": completion.input_tokens,
            "output_tokens": completion.output_tokens,
            "available_quotas": {},
            "tool_calls": [],
            "tool_results": [],
        }
    )


def sse_frame(event: str, data: dict[str, Any], **extra: Any) -> bytes:
    return f"data: {json.dumps({'event': event, 'data': data, **extra})}\n\n".encode()


def event_as_text(event: str, data: dict[str, Any]) -> str:
    """What a text/plain stream shows of an event besides the tokens, as lightspeed-stack writes it: the
    documents referred to after the answer, and a failure as its status and cause (else a failed answer
    would end like a whole one)."""
    if event == "error":
        return f"Status: {data['status_code']} - {data['response']} - {data['cause']}"
    if event == "end":
        documents = [
            f"{d['doc_title']}: {d['doc_url']}" for d in data["referenced_documents"] if d["doc_url"] and d["doc_title"]
        ]
        return "\n\n---\n\n" + "\n".join(documents) if documents else ""
    return ""


async def _first_piece(pieces: AsyncGenerator[str, None]) -> str | None:
    """Pull the first piece before the response starts, so early failures are plain HTTP errors."""
    try:
        return await anext(pieces)
    except StopAsyncIteration:
        return None


class AnswerStream:
    """Writes one answer to the client, as SSE frames or, for media_type text/plain, as raw text."""

    def __init__(
        self, response: web.StreamResponse, turn: PreparedTurn, request_id: str, usage: Usage, as_text: bool
    ) -> None:
        self.response = response
        self.turn = turn
        self.request_id = request_id
        self.usage = usage  # the provider fills it as the answer ends
        self.as_text = as_text
        self.parts: list[str] = []

    async def event(self, event: str, data: dict[str, Any], **extra: Any) -> None:
        if not self.as_text:
            await self.response.write(sse_frame(event, data, **extra))
        elif text := event_as_text(event, data):
            await self.response.write(text.encode())

    async def token(self, piece: str) -> None:
        frame = piece.encode() if self.as_text else sse_frame("token", {"id": len(self.parts), "token": piece})
        self.parts.append(piece)
        await self.response.write(frame)

    async def run(self, first: str | None, pieces: AsyncGenerator[str, None]) -> None:
        """start, the tokens, turn_complete; `end` is the caller's, as an interrupted stream ends too."""
        await self.event("start", {"conversation_id": self.turn.conversation_id, "request_id": self.request_id})
        if first is not None:
            await self.token(first)
        async for piece in pieces:
            await self.token(piece)
        await self.event("turn_complete", {"id": len(self.parts), "token": "".join(self.parts)})

    async def stopped(self) -> None:
        """The end of a stream its user interrupted, as lightspeed-stack sends it: a last token that closes
        what the answer left open (a code fence, an HTML block) and says it was stopped, then `interrupted`.
        The token is part of the answer the conversation and the transcript keep."""
        await self.token(markdown.closing("".join(self.parts)) + markdown.STOPPED_NOTE)
        await self.event("interrupted", {"request_id": self.request_id})

    async def end(self) -> None:
        """The end of a whole answer. `truncated` is null, as lightspeed-stack always sends it in this event."""
        end = {
            "referenced_documents": referenced_documents(self.turn.question.hits),
            "truncated": None,
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
        }
        await self.event("end", end, available_quotas={})


async def _open_stream(request: web.Request, turn: PreparedTurn, usage: Usage, as_text: bool) -> AnswerStream:
    response = web.StreamResponse()
    stream = AnswerStream(response, turn, request.app[STREAMS].new_id(request[REQUEST_ID]), usage, as_text)
    response.headers.update(
        {
            "Content-Type": "text/plain; charset=utf-8" if stream.as_text else "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Request-ID": request[REQUEST_ID],
        }
    )
    await response.prepare(request)
    return stream


async def _run_interruptible(request: web.Request, stream: AnswerStream, task: asyncio.Task[None]) -> bool:
    """Wait for the stream's task; True when it ran to the end, False when interrupted through the API.
    Cancelling the handler (the client went away) cancels the task and propagates."""
    with request.app[STREAMS].running(stream.request_id, stream.turn.user_id, task):
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            log.info("stream_interrupted_by_request", tokens=len(stream.parts))
            return False
    return True


async def streaming_query(request: web.Request) -> web.StreamResponse:
    turns: Turns = request.app[SERVER].turns
    body, turn = await prepare_turn(request)
    started = time.perf_counter()
    usage = Usage()
    pieces = turns.stream(turn, usage)
    try:
        first = await _first_piece(pieces)
    except ApiError:
        turns.failed(turn)
        raise
    stream = await _open_stream(request, turn, usage, as_text=body.media_type == "text/plain")
    completed = False
    try:
        completed = await _run_interruptible(request, stream, asyncio.create_task(stream.run(first, pieces)))
        await (stream.end() if completed else stream.stopped())
        turns.answered(turn, "/v1/streaming_query", started, usage)
    except ApiError as exc:
        turns.failed(turn)
        log.warning("stream_failed", status=exc.status, response=exc.response)
        with contextlib.suppress(ConnectionError):
            await stream.event("error", {"status_code": exc.status, "response": exc.response, "cause": exc.cause})
    except ConnectionError:
        log.info("stream_interrupted", tokens=len(stream.parts))
    finally:
        await pieces.aclose()
        # Shielded: the transcript is written even when the handler is being cancelled.
        await asyncio.shield(turns.finish(turn, "".join(stream.parts), truncated=not completed))
    with contextlib.suppress(ConnectionError):
        await stream.response.write_eof()
    return stream.response


async def interrupt(request: web.Request) -> web.Response:
    """POST /v1/streaming_query/interrupt: stop the caller's stream that is running under `request_id`."""
    user = request[USER]
    body = parse_body(StreamingInterruptRequest, await read_body(request))
    if not request.app[STREAMS].interrupt(body.request_id, user.user_id):
        raise NotFound("Streaming Request not found", f"Streaming Request with ID {body.request_id} does not exist")
    return web.json_response(
        {"request_id": body.request_id, "interrupted": True, "message": "Streaming request interrupted"}
    )
