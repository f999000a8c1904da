"""A turn of a conversation, from question to transcript: prepare, answer, remember, record.

The HTTP handlers (`api/handlers/query.py`) translate requests into these
calls and the results back into JSON or server-sent events; everything a turn
decides is here:

1. **prepare**: the question's size limits (413/422), the model asked for
   (404), the conversation's owner (404/403, `store.conversations`), the
   recent history that fits `answers.history_max_chars`, and retrieval for
   the question (with the earlier questions a follow-up leans on);
2. **answer**: the provider's completion or its stream, counted in the
   metrics (`ls_llm_calls_total`, failures, tokens);
3. **remember**: the turn added to the conversation, its question redacted;
4. **record**: the transcript written (when `transcripts_enabled`), with the
   question and text attachments redacted. It is handed off, not waited for:
   the answer goes out while the writer process fsyncs it, as a transcript
   that cannot be written is logged and counted, never turned into an error
   for an answer the user already has. `settled()` waits for the ones handed
   off (an erasure or an export of this server's records does, first, and
   the stop does before the record writer ends). One that lands after an
   erasure of its user began (a sibling worker's, which cannot wait for it)
   is removed at once, by the rule the collector follows for the erasure's
   note.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from lightspeed.answers.answering import Answerer, Found, ModelChoice, recent_history, retrieval_query
from lightspeed.answers.providers.base import Attachment, Completion, Exchange, Question, Usage
from lightspeed.answers.retrieval import Hit
from lightspeed.identity import UserHasher
from lightspeed.metrics import Metrics
from lightspeed.records.formats import Transcript
from lightspeed.records.redaction import Redactor
from lightspeed.records.writer import RecordWriter
from lightspeed.store.conversations import ConversationStore, Turn, check_owner
from lightspeed_common import tracing
from lightspeed_common.atomic import fsync_dir_if_present
from lightspeed_common.config import AnswersConfig
from lightspeed_common.errors import (
    INVALID_ATTRIBUTE,
    ApiError,
    NotFound,
    PayloadTooLarge,
    RecordWriteError,
    Unprocessable,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Ask:
    """A question as the user sent it."""

    query: str
    conversation_id: str | None = None
    provider: str | None = None
    model: str | None = None
    system_prompt: str | None = None
    attachments: Sequence[Attachment] = ()
    generate_topic_summary: bool = True  # a new conversation's topic summary: its first question's first line
    vector_store_ids: Sequence[str] | None = None  # None: the docs index; []: no retrieval; an id: unknown here
    shield_ids: Sequence[str] | None = None  # this server runs no shields: any id is unknown


@dataclass(frozen=True)
class PreparedTurn:
    user_id: str
    user_hash: str
    ask: Ask
    choice: ModelChoice
    conversation_id: str
    question: Question
    started_at: datetime


def rag_chunks(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    return [{"content": h.passage.text, "source": h.passage.source, "score": round(h.score, 4)} for h in hits]


def referenced_documents(hits: Sequence[Hit]) -> list[dict[str, str]]:
    seen: dict[str, str] = {}
    for hit in hits:
        seen.setdefault(hit.passage.source, hit.passage.title)
    return [{"doc_url": source, "doc_title": title} for source, title in seen.items()]


def check_named_parts(ask: Ask) -> None:
    """Shields and vector stores a question names: this server has neither, so any id is lightspeed-stack's
    404 for an unknown one ("Shield not found", "Vector Store not found")."""
    if missing := sorted(set(ask.shield_ids or ())):
        plural = "s" if len(missing) > 1 else ""
        raise NotFound(f"Shield{plural} not found", f"Shield{plural} with ID {', '.join(missing)} does not exist")
    if ask.vector_store_ids:
        raise NotFound("Vector Store not found", f"Vector Store with ID {ask.vector_store_ids[0]} does not exist")


def check_sizes(ask: Ask, limits: AnswersConfig) -> None:
    """A question's cost is bounded by its size: lightspeed-stack's 413 for a prompt too long or
    attachments too large, its 422 for an attachment too many."""
    prompt = len(ask.query) + len(ask.system_prompt or "")
    if prompt > limits.max_prompt_chars:
        raise PayloadTooLarge(
            "Prompt is too long",
            f"The prompt exceeds the maximum allowed length: {prompt} characters, at most {limits.max_prompt_chars}.",
        )
    if len(ask.attachments) > limits.max_attachments:
        cause = f"Too many attachments: {len(ask.attachments)}, at most {limits.max_attachments}"
        raise Unprocessable(INVALID_ATTRIBUTE, cause)
    size = sum(a.size for a in ask.attachments)
    if size > limits.max_attachments_bytes:
        raise PayloadTooLarge(
            "File too large",
            f"The attachments total {size} bytes, more than the maximum of {limits.max_attachments_bytes} bytes",
        )


def _recorded_attachments(attachments: Sequence[Attachment], redacted: Iterator[str]) -> list[dict[str, Any]]:
    """The attachments as the transcript keeps them: metadata, and a text's content redacted (never image bytes)."""
    recorded = []
    for attachment in attachments:
        entry: dict[str, Any] = attachment.metadata()
        if not attachment.is_image:
            entry["content"] = next(redacted)
        recorded.append(entry)
    return recorded


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir_if_present(path.parent)


class Turns:
    def __init__(
        self,
        answerer: Answerer,
        conversations: ConversationStore,
        hasher: UserHasher,
        redactor: Redactor,
        writer: RecordWriter,
        *,
        metrics: Metrics,
        limits: AnswersConfig,
        transcripts_enabled: bool,
        erased: Callable[[str, datetime], Awaitable[bool]] | None = None,
    ) -> None:
        """`erased(user_hash, written)`: whether an erasure covers a record of the user written then."""
        self._answerer = answerer
        self._conversations = conversations
        self._hasher = hasher
        self._redactor = redactor
        self._writer = writer
        self._metrics = metrics
        self._limits = limits
        self._transcripts_enabled = transcripts_enabled
        self._erased = erased
        self._handed_off: set[asyncio.Task[None]] = set()

    def check_sizes(self, ask: Ask) -> None:
        check_sizes(ask, self._limits)

    async def prepare(self, user_id: str, ask: Ask, *, others: bool = False) -> PreparedTurn:
        """Everything before the provider is asked (sizes, model, owner, history, retrieval); `others`:
        the caller may continue other users' conversations."""
        self.check_sizes(ask)
        choice = self._answerer.choose_model(ask.provider, ask.model)
        user_hash = self._hasher(user_id)
        started_at = datetime.now(UTC)
        history: list[Exchange] = []
        if ask.conversation_id is not None:
            await check_owner(self._conversations, ask.conversation_id, user_id, user_hash, others=others)
            turns = [Exchange(t.question, t.answer) for t in await self._conversations.turns(ask.conversation_id)]
            history = recent_history(turns, self._limits.history_max_chars)
        check_named_parts(ask)
        conversation_id = ask.conversation_id or str(uuid.uuid4())
        if ask.vector_store_ids == []:  # lightspeed-stack's "query none of the stores"
            found = Found([], [])
        else:
            found = await self._answerer.retrieve(retrieval_query(ask.query, history), user_hash)
        question = Question(
            ask.query, choice.model, ask.system_prompt, ask.attachments, found.hits, history, found.excerpts
        )
        return PreparedTurn(user_id, user_hash, ask, choice, conversation_id, question, started_at)

    async def complete(self, turn: PreparedTurn, endpoint: str) -> Completion:
        """The provider's whole answer, counted."""
        started = time.perf_counter()
        try:
            with tracing.span("provider call", **self._span_attributes(turn)):
                completion = await self._answerer.provider.complete(turn.question)
        except ApiError:
            self.failed(turn)
            raise
        self.answered(turn, endpoint, started, Usage(completion.input_tokens, completion.output_tokens))
        return completion

    def stream(self, turn: PreparedTurn, usage: Usage) -> AsyncGenerator[str, None]:
        """The provider's answer piece by piece; it fills `usage` as it ends. The caller counts it
        (`answered` or `failed`): only the caller knows when a stream has ended, and how."""
        return self._traced(turn, self._answerer.provider.stream(turn.question, usage))

    async def _traced(self, turn: PreparedTurn, pieces: AsyncGenerator[str, None]) -> AsyncGenerator[str, None]:
        """The stream inside a `provider call` span, from its first piece to its end (or its abandonment)."""
        with tracing.span("provider call", **self._span_attributes(turn)):
            try:
                async for piece in pieces:
                    yield piece
            finally:
                await pieces.aclose()

    @staticmethod
    def _span_attributes(turn: PreparedTurn) -> dict[str, str]:
        return {"gen_ai.system": turn.choice.provider, "gen_ai.request.model": turn.choice.model}

    def failed(self, turn: PreparedTurn) -> None:
        self._metrics.llm_failure(turn.choice.provider, turn.choice.model)

    def answered(self, turn: PreparedTurn, endpoint: str, started: float, usage: Usage) -> None:
        seconds = time.perf_counter() - started
        sent, received = usage.input_tokens, usage.output_tokens
        self._metrics.llm_call(
            turn.choice.provider, turn.choice.model, endpoint, seconds=seconds, sent=sent, received=received
        )

    async def finish(self, turn: PreparedTurn, answer: str, truncated: bool) -> None:
        """Remember the turn in the conversation and record its transcript."""
        attachments = turn.question.attachments
        texts = [a.content for a in attachments if not a.is_image] if self._transcripts_enabled else []
        # The question and the text attachments redacted together: the loop or the worker process is chosen
        # by their total length, so many short attachments cannot stall the loop.
        redacted = iter(await self._redactor.redact_all([turn.ask.query, *texts]))
        redacted_query = next(redacted)
        await self._remember(turn, redacted_query, answer)
        if self._transcripts_enabled:
            self._hand_off(
                self._record(turn, redacted_query, _recorded_attachments(attachments, redacted), answer, truncated)
            )

    def _hand_off(self, write: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(write)
        self._handed_off.add(task)
        task.add_done_callback(self._handed_off.discard)

    async def settled(self) -> None:
        """Every transcript handed off so far is on disk, or its failure logged."""
        if self._handed_off:
            await asyncio.gather(*self._handed_off, return_exceptions=True)

    async def _remember(self, turn: PreparedTurn, redacted_query: str, answer: str) -> None:
        """Add the turn to the conversation's history (the question as the records keep it, redacted)."""
        remembered = Turn(
            question=redacted_query,
            answer=answer,
            model=turn.choice.model,
            provider=turn.choice.provider,
            started_at=turn.started_at,
            completed_at=datetime.now(UTC),
            attachments=[a.metadata() for a in turn.question.attachments],
        )
        new = turn.ask.conversation_id is None
        topic = new and turn.ask.generate_topic_summary
        await self._conversations.add_turn(turn.conversation_id, turn.user_hash, remembered, topic=topic)

    async def _record(
        self, turn: PreparedTurn, redacted_query: str, attachments: list[dict[str, Any]], answer: str, truncated: bool
    ) -> None:
        transcript = Transcript(
            user_hash=turn.user_hash,
            conversation_id=turn.conversation_id,
            provider=turn.choice.provider,
            model=turn.choice.model,
            query_provider=turn.ask.provider,
            query_model=turn.ask.model,
            redacted_query=redacted_query,
            llm_response=answer,
            rag_chunks=rag_chunks(turn.question.hits),
            truncated=truncated,
            attachments=attachments,
        )
        try:
            with tracing.span("record write", **{"lightspeed.record_kind": "transcript"}):
                path = await self._writer.write_transcript(transcript)
        except RecordWriteError as exc:
            log.error("transcript_write_failed", reason=exc.reason)
        else:
            log.debug("record_written", kind="transcript", file=path.name)
            await self._unless_erased(turn.user_hash, transcript, path)

    async def _unless_erased(self, user_hash: str, transcript: Transcript, path: Path) -> None:
        """Remove the transcript at `path` if an erasure of its user began after it was made (a sibling's)."""
        if self._erased is None or not await self._erased(user_hash, transcript.timestamp):
            return
        try:
            await asyncio.to_thread(_remove, path)
        except OSError as exc:  # the collector still drops it: the erasure's note covers it
            log.error("transcript_erase_on_arrival_failed", file=path.name, reason=exc.strerror or str(exc))
        else:
            log.info("transcript_erased_on_arrival", file=path.name)
