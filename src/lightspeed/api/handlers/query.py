"""POST /v1/query and POST /v1/streaming_query."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from lightspeed.answers.answering import ModelChoice, recent_history, retrieval_query
from lightspeed.answers.providers.base import Attachment, Exchange, Question, Usage
from lightspeed.answers.retrieval import Hit
from lightspeed.api.catalog_payloads import StreamingInterruptRequest
from lightspeed.api.keys import ANSWERS, AUTH, CONFIG, CONVERSATIONS, HASHER, METRICS, RECORDS, REDACTOR, STREAMS
from lightspeed.api.payloads import INVALID_ATTRIBUTE, QueryRequest, parse_body
from lightspeed.auth import User
from lightspeed.records.formats import Transcript
from lightspeed.store.conversations import ConversationStore, Turn
from lightspeed_common.config import AnswersConfig
from lightspeed_common.errors import ApiError, Forbidden, NotFound, PayloadTooLarge, RecordWriteError, Unprocessable
from lightspeed_common.http.keys import REQUEST_ID
from lightspeed_common.http.middleware import read_body

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PreparedQuery:
    user: User
    user_hash: str
    body: QueryRequest
    choice: ModelChoice
    conversation_id: str
    is_new: bool
    question: Question
    started_at: datetime


NO_PERMISSION = "User does not have permission to perform this action"


def conversation_not_found(conversation_id: str) -> NotFound:
    return NotFound("Conversation not found", f"Conversation with ID {conversation_id} does not exist")


async def check_conversation_owner(store: ConversationStore, conversation_id: str, user: User, user_hash: str) -> None:
    """404 for an unknown conversation, 403 for someone else's (lightspeed-stack's texts)."""
    owner = await store.owner(conversation_id)
    if owner is None:
        raise conversation_not_found(conversation_id)
    if owner != user_hash:
        raise Forbidden(
            NO_PERMISSION,
            f"User {user.user_id} does not have permission to read conversation with ID {conversation_id}",
        )


def check_sizes(body: QueryRequest, limits: AnswersConfig) -> None:
    """A question's cost is bounded by its size: lightspeed-stack's 413 for a prompt too long or
    attachments too large, its 422 for an attachment too many."""
    prompt = len(body.query) + len(body.system_prompt or "")
    if prompt > limits.max_prompt_chars:
        raise PayloadTooLarge(
            "Prompt is too long",
            f"The prompt exceeds the maximum allowed length: {prompt} characters, at most {limits.max_prompt_chars}.",
        )
    attachments = body.attachments or []
    if len(attachments) > limits.max_attachments:
        cause = f"Too many attachments: {len(attachments)}, at most {limits.max_attachments}"
        raise Unprocessable(INVALID_ATTRIBUTE, cause)
    size = sum(a.size for a in attachments)
    if size > limits.max_attachments_bytes:
        raise PayloadTooLarge(
            "File too large",
            f"The attachments total {size} bytes, more than the maximum of {limits.max_attachments_bytes} bytes",
        )


async def prepare_query(request: web.Request) -> PreparedQuery:
    app = request.app
    user = app[AUTH](request)
    body = parse_body(QueryRequest, await read_body(request))
    check_sizes(body, app[CONFIG].answers)
    for attachment in body.attachments or ():
        attachment.check()
    choice = app[ANSWERS].choose_model(body.provider, body.model)
    user_hash = app[HASHER](user.user_id)
    started_at = datetime.now(UTC)
    history: list[Exchange] = []
    if body.conversation_id is not None:
        store = app[CONVERSATIONS]
        await check_conversation_owner(store, body.conversation_id, user, user_hash)
        turns = [Exchange(t.question, t.answer) for t in await store.turns(body.conversation_id)]
        history = recent_history(turns, app[CONFIG].answers.history_max_chars)
    conversation_id = body.conversation_id or str(uuid.uuid4())
    found = await app[ANSWERS].retrieve(retrieval_query(body.query, history), user_hash)
    attachments = [Attachment(a.attachment_type, a.content_type, a.content, a.size) for a in body.attachments or ()]
    question = Question(body.query, choice.model, body.system_prompt, attachments, found.hits, history, found.excerpts)
    is_new = body.conversation_id is None
    return PreparedQuery(user, user_hash, body, choice, conversation_id, is_new, question, started_at)


def rag_chunks(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    return [{"content": h.passage.text, "source": h.passage.source, "score": round(h.score, 4)} for h in hits]


def referenced_documents(hits: Sequence[Hit]) -> list[dict[str, str]]:
    seen: dict[str, str] = {}
    for hit in hits:
        seen.setdefault(hit.passage.source, hit.passage.title)
    return [{"doc_url": source, "doc_title": title} for source, title in seen.items()]


async def remember_turn(app: web.Application, prepared: PreparedQuery, redacted_query: str, answer: str) -> None:
    """Add the turn to the conversation's history (the question as the records keep it, redacted)."""
    turn = Turn(
        question=redacted_query,
        answer=answer,
        model=prepared.choice.model,
        provider=prepared.choice.provider,
        started_at=prepared.started_at,
        completed_at=datetime.now(UTC),
        attachments=[a.metadata() for a in prepared.question.attachments],
    )
    await app[CONVERSATIONS].add_turn(prepared.conversation_id, prepared.user_hash, turn)


def _recorded_attachments(attachments: Sequence[Attachment], redacted: Iterator[str]) -> list[dict[str, Any]]:
    """The attachments as the transcript keeps them: metadata, and a text's content redacted (never image bytes)."""
    recorded = []
    for attachment in attachments:
        entry: dict[str, Any] = attachment.metadata()
        if not attachment.is_image:
            entry["content"] = next(redacted)
        recorded.append(entry)
    return recorded


async def finish_turn(app: web.Application, prepared: PreparedQuery, answer: str, truncated: bool) -> None:
    """Add the turn to the conversation and write the transcript.

    A transcript that cannot be written is logged and counted; it never turns
    an answer the user already has into an error.
    """
    attachments = prepared.question.attachments
    recording = app[CONFIG].user_data_collection.transcripts_enabled
    texts = [a.content for a in attachments if not a.is_image] if recording else []
    # The question and the text attachments redacted together: the loop or the worker process is chosen
    # by their total length, so many short attachments cannot stall the loop.
    redacted = iter(await app[REDACTOR].redact_all([prepared.body.query, *texts]))
    redacted_query = next(redacted)
    await remember_turn(app, prepared, redacted_query, answer)
    if not recording:
        return
    transcript = Transcript(
        user_hash=prepared.user_hash,
        conversation_id=prepared.conversation_id,
        provider=prepared.choice.provider,
        model=prepared.choice.model,
        query_provider=prepared.body.provider,
        query_model=prepared.body.model,
        redacted_query=redacted_query,
        llm_response=answer,
        rag_chunks=rag_chunks(prepared.question.hits),
        truncated=truncated,
        attachments=_recorded_attachments(attachments, redacted),
    )
    try:
        path = await app[RECORDS].write_transcript(transcript)
    except RecordWriteError as exc:
        log.error("transcript_write_failed", reason=exc.reason)
    else:
        log.debug("record_written", kind="transcript", file=path.name)


def _llm_failed(app: web.Application, prepared: PreparedQuery) -> None:
    app[METRICS].llm_failure(prepared.choice.provider, prepared.choice.model)


def _llm_answered(app: web.Application, prepared: PreparedQuery, endpoint: str, started: float, usage: Usage) -> None:
    choice = prepared.choice
    seconds = time.perf_counter() - started
    app[METRICS].llm_call(
        choice.provider, choice.model, endpoint, seconds=seconds, sent=usage.input_tokens, received=usage.output_tokens
    )


async def query(request: web.Request) -> web.Response:
    app = request.app
    prepared = await prepare_query(request)
    started = time.perf_counter()
    try:
        completion = await app[ANSWERS].provider.complete(prepared.question)
    except ApiError:
        _llm_failed(app, prepared)
        raise
    _llm_answered(app, prepared, "/v1/query", started, Usage(completion.input_tokens, completion.output_tokens))
    await finish_turn(request.app, prepared, completion.text, truncated=False)
    return web.json_response(
        {
            "conversation_id": prepared.conversation_id,
            "response": completion.text,
            "rag_chunks": rag_chunks(prepared.question.hits),
            "referenced_documents": referenced_documents(prepared.question.hits),
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


async def _first_piece(pieces: AsyncGenerator[str, None]) -> str | None:
    """Pull the first piece before the response starts, so early failures are plain HTTP errors."""
    try:
        return await anext(pieces)
    except StopAsyncIteration:
        return None


class AnswerStream:
    """Writes one answer to the client, as SSE frames or, for media_type text/plain, as raw text."""

    def __init__(self, response: web.StreamResponse, prepared: PreparedQuery, request_id: str, usage: Usage) -> None:
        self.response = response
        self.prepared = prepared
        self.request_id = request_id
        self.usage = usage  # the provider fills it as the answer ends
        self.as_text = prepared.body.media_type == "text/plain"
        self.parts: list[str] = []

    async def event(self, event: str, data: dict[str, Any], **extra: Any) -> None:
        if not self.as_text:
            await self.response.write(sse_frame(event, data, **extra))

    async def token(self, piece: str) -> None:
        frame = piece.encode() if self.as_text else sse_frame("token", {"id": len(self.parts), "token": piece})
        self.parts.append(piece)
        await self.response.write(frame)

    async def run(self, first: str | None, pieces: AsyncGenerator[str, None]) -> None:
        """start, the tokens, turn_complete; `end` is the caller's, as an interrupted stream ends too."""
        await self.event("start", {"conversation_id": self.prepared.conversation_id, "request_id": self.request_id})
        if first is not None:
            await self.token(first)
        async for piece in pieces:
            await self.token(piece)
        await self.event("turn_complete", {"id": len(self.parts), "token": "".join(self.parts)})

    async def end(self, truncated: bool) -> None:
        end = {
            "referenced_documents": referenced_documents(self.prepared.question.hits),
            "truncated": truncated,
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
        }
        await self.event("end", end, available_quotas={})


async def _open_stream(request: web.Request, prepared: PreparedQuery, usage: Usage) -> AnswerStream:
    response = web.StreamResponse()
    stream = AnswerStream(response, prepared, request.app[STREAMS].new_id(request[REQUEST_ID]), usage)
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
    with request.app[STREAMS].running(stream.request_id, stream.prepared.user.user_id, task):
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
    app = request.app
    prepared = await prepare_query(request)
    started = time.perf_counter()
    usage = Usage()
    pieces = app[ANSWERS].provider.stream(prepared.question, usage)
    try:
        first = await _first_piece(pieces)
    except ApiError:
        _llm_failed(app, prepared)
        raise
    stream = await _open_stream(request, prepared, usage)
    completed = False
    try:
        completed = await _run_interruptible(request, stream, asyncio.create_task(stream.run(first, pieces)))
        await stream.end(truncated=not completed)
        _llm_answered(app, prepared, "/v1/streaming_query", started, usage)
    except ApiError as exc:
        _llm_failed(app, prepared)
        log.warning("stream_failed", status=exc.status, response=exc.response)
        with contextlib.suppress(ConnectionError):
            await stream.event("error", {"response": exc.response, "cause": exc.cause})
    except ConnectionError:
        log.info("stream_interrupted", tokens=len(stream.parts))
    finally:
        await pieces.aclose()
        # Shielded: the transcript is written even when the handler is being cancelled.
        await asyncio.shield(finish_turn(app, prepared, "".join(stream.parts), truncated=not completed))
    with contextlib.suppress(ConnectionError):
        await stream.response.write_eof()
    return stream.response


async def interrupt(request: web.Request) -> web.Response:
    """POST /v1/streaming_query/interrupt: stop the caller's stream that is running under `request_id`."""
    app = request.app
    user = app[AUTH](request)
    body = parse_body(StreamingInterruptRequest, await read_body(request))
    if not app[STREAMS].interrupt(body.request_id, user.user_id):
        raise NotFound("Streaming Request not found", f"Streaming Request with ID {body.request_id} does not exist")
    return web.json_response(
        {"request_id": body.request_id, "interrupted": True, "message": "Streaming request interrupted"}
    )
