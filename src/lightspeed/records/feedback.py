"""A user's feedback, from what they sent to the record on disk.

The rules in order: the feedback toggle is on (403 otherwise), the
conversation is the user's (404/403, `store.conversations`), the three texts
are redacted together, and the record is written atomically; a record that
cannot be written is a 500 the user sees (feedback is never lost silently).
"""

from __future__ import annotations

from pathlib import Path

import structlog

from lightspeed.identity import UserHasher
from lightspeed.records.formats import Feedback, GivenFeedback
from lightspeed.records.redaction import Redactor
from lightspeed.records.writer import RecordWriter
from lightspeed.store.conversations import ConversationStore, check_owner
from lightspeed.store.settings import FeedbackStatusChange, RuntimeSettings
from lightspeed_common import tracing
from lightspeed_common.errors import ApiError, Conflict, Forbidden, RecordWriteError

log = structlog.get_logger(__name__)


class FeedbackDesk:
    def __init__(
        self,
        settings: RuntimeSettings,
        conversations: ConversationStore,
        hasher: UserHasher,
        redactor: Redactor,
        writer: RecordWriter,
        *,
        storage_configured: bool,
    ) -> None:
        self._settings = settings
        self._conversations = conversations
        self._hasher = hasher
        self._redactor = redactor
        self._writer = writer
        self._storage_configured = storage_configured

    @property
    def enabled(self) -> bool:
        return self._settings.feedback_enabled

    def check_enabled(self) -> None:
        if not self.enabled:
            raise Forbidden("Storing feedback is disabled", "Storing feedback is disabled.")

    async def submit(self, user_id: str, given: GivenFeedback) -> Path:
        """Check, redact and write one feedback; the record's path."""
        self.check_enabled()
        user_hash = self._hasher(user_id)
        await check_owner(self._conversations, given.conversation_id, user_id, user_hash, "submit feedback for")
        # One decision for the three texts together: short ones on the loop, long ones in the worker process.
        question, response, comment = await self._redactor.redact_all(
            [given.user_question, given.llm_response, given.user_feedback or ""]
        )
        feedback = Feedback(
            user_hash=user_hash,
            conversation_id=given.conversation_id,
            user_question=question,
            llm_response=response,
            sentiment=given.sentiment,
            user_feedback=comment if given.user_feedback is not None else None,
            categories=given.categories,
        )
        try:
            with tracing.span("record write", **{"lightspeed.record_kind": "feedback"}):
                path = await self._writer.write_feedback(feedback)
        except RecordWriteError as exc:
            log.error("feedback_write_failed", reason=exc.reason)
            raise ApiError("Failed to store feedback", exc.reason) from exc
        log.debug("record_written", kind="feedback", file=path.name)
        return path

    async def set_enabled(self, enabled: bool, user_id: str) -> FeedbackStatusChange:
        """The toggle, persisted for every process (409 when enabling without a feedback directory)."""
        if enabled and not self._storage_configured:
            raise Conflict("Feedback cannot be enabled", "user_data_collection.feedback_storage is not configured")
        change = await self._settings.set_feedback_enabled(enabled, user_id, self._hasher(user_id))
        log.info("feedback_status_changed", previous=change.previous_status, updated=change.updated_status)
        return change
