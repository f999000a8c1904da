"""The feedback browser's and export's queries (issue 27), once for both backends; `SQLStorage` includes them.

Each feedback record's browsable fields and its JSON are kept in `feedback`, written in the upload's
transaction and removed with its upload (retention) or by an erasure's rewrite. Pages are read newest
first by (at, content_sha256), a key the index holds, so a page costs the same deep in the history as at
its top, and an export walks the pages without holding the whole set.
"""

from __future__ import annotations

import json
from typing import Any

from ingest.storage import FeedbackFilter, RecordInfo
from lightspeed_common.sql import Session, SQLDatabase

CHUNK = 200  # rows a multi-row INSERT carries (200 x 8 values)


class FeedbackQueries(SQLDatabase):
    @staticmethod
    def _index_feedback(session: Session, request_id: str, records: list[RecordInfo]) -> None:
        """Inside an upload's transaction: its feedback records not seen before (re-sent ones are kept once)."""
        rows = []
        for record in sorted((r for r in records if r.feedback is not None), key=lambda r: r.content_sha256):
            fb = record.feedback
            assert fb is not None
            categories = json.dumps(list(fb.categories))
            rows.append(
                (
                    record.content_sha256,
                    request_id,
                    fb.at,
                    fb.at[:10],
                    fb.sentiment,
                    categories,
                    fb.user_feedback,
                    fb.record,
                )
            )
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
            session.execute(
                "INSERT INTO feedback (content_sha256, request_id, at, day, sentiment, categories, user_feedback, "  # noqa: S608
                f"record) VALUES {values} ON CONFLICT (content_sha256) DO NOTHING",
                [value for row in chunk for value in row],
            )

    def feedback_page(self, where: FeedbackFilter, limit: int, after: tuple[str, str] | None) -> list[dict[str, Any]]:
        """Up to `limit` feedback records matching `where`, newest first, after the (at, sha256) key `after`."""
        conditions, args = _conditions(where)
        if after is not None:
            conditions.append("(at, content_sha256) < (?, ?)")  # a row value: the index's range, both backends
            args += [after[0], after[1]]
        sql = (
            "SELECT at, content_sha256, sentiment, categories, user_feedback, record FROM feedback "  # noqa: S608
            f"WHERE {' AND '.join(conditions) or 'TRUE'} ORDER BY at DESC, content_sha256 DESC LIMIT ?"
        )
        return self._read(sql, [*args, limit])


def _conditions(where: FeedbackFilter) -> tuple[list[str], list[Any]]:
    conditions: list[str] = []
    args: list[Any] = []
    if where.since is not None:
        conditions.append("day >= ?")
        args.append(where.since)
    if where.until is not None:
        conditions.append("day <= ?")
        args.append(where.until)
    if where.sentiment is not None:
        conditions.append("sentiment = ?")
        args.append(where.sentiment)
    if where.category is not None:  # a plain word (the handler checks): it needs no escaping in LIKE
        conditions.append("categories LIKE ?")
        args.append(f'%"{where.category}"%')
    if where.text:
        escaped = where.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append("LOWER(user_feedback) LIKE ? ESCAPE '\\'")
        args.append(f"%{escaped}%")
    return conditions, args


class TranscriptQueries(SQLDatabase):
    def _one_of(self, column: str, values: Any) -> tuple[str, list[Any]]:
        raise NotImplementedError

    def with_transcripts(self, conversation_ids: list[str]) -> set[str]:
        """Which of these conversations the ingest holds a transcript of."""
        if not conversation_ids:
            return set()
        condition, args = self._one_of("conversation_id", sorted(set(conversation_ids)))
        rows = self._read(
            f"SELECT DISTINCT conversation_id FROM records WHERE kind = 'transcripts' AND {condition}",  # noqa: S608
            args,
        )
        return {row["conversation_id"] for row in rows}

    def transcript_members(self, conversation_id: str) -> list[tuple[str, str]]:
        """(archive, member) of each transcript of the conversation the ingest holds, by archive."""
        rows = self._read(
            "SELECT u.archive, r.member FROM records r JOIN uploads u ON u.request_id = r.request_id "
            "WHERE r.conversation_id = ? AND r.kind = 'transcripts' ORDER BY u.archive, r.member",
            (conversation_id,),
        )
        return [(row["archive"], row["member"]) for row in rows]
