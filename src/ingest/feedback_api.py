"""`GET /api/admin/v1/feedback`: the feedback records received, filtered, a page at a time as JSON, or the
whole filtered set streamed as CSV or JSON Lines (issue 27; docs/ingest.md, "Feedback").

Filters: `since`, `until` (days, YYYY-MM-DD, inclusive), `sentiment` (1 or -1), `category` (one of the
record's `categories`), `q` (text in `user_feedback`, any case). A JSON page has `next`, the cursor of
the page after it (`after=`). An export walks the pages itself, so it never holds the set in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import re
import tarfile
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp import web

from ingest.admin import check_admin
from ingest.context import INGEST, Ingest
from ingest.storage import FeedbackFilter
from lightspeed_common.errors import BadRequest

PAGE = 50
MAX_PAGE = 500
EXPORT_PAGE = 1000
_CATEGORY = re.compile(r"[a-z0-9_]{1,64}")
_CURSOR = re.compile(r"([0-9T:Z-]{0,25}),([0-9a-f]{64})")
CSV_COLUMNS = (
    "timestamp",
    "sentiment",
    "categories",
    "user_feedback",
    "user_question",
    "llm_response",
    "conversation_id",
    "user_id",
)
FORMATS = {"json", "csv", "jsonl"}


def feedback_filter(query: Any) -> FeedbackFilter:
    """The filters in a request's query, or BadRequest naming the one that is wrong."""
    days = {}
    for name in ("since", "until"):
        value = query.get(name)
        if value is not None:
            try:
                days[name] = date.fromisoformat(value).isoformat()
            except ValueError:
                raise BadRequest(f"Invalid {name}", f"{name} must be a day, YYYY-MM-DD") from None
    sentiment = query.get("sentiment")
    if sentiment is not None and sentiment not in ("1", "-1"):
        raise BadRequest("Invalid sentiment", "sentiment must be 1 or -1")
    category = query.get("category")
    if category is not None and not _CATEGORY.fullmatch(category):
        raise BadRequest("Invalid category", "category must be a word of a-z, 0-9 and _, such as incorrect")
    text = query.get("q")
    if text is not None and len(text) > 200:
        raise BadRequest("Invalid q", "q must be at most 200 characters")
    if text is not None:
        text = text.replace("\x00", "")  # no stored text holds one (PostgreSQL refuses them in a query)
    return FeedbackFilter(
        days.get("since"), days.get("until"), int(sentiment) if sentiment else None, category, text or None
    )


def _limit(query: Any) -> int:
    try:
        limit = int(query.get("limit", str(PAGE)))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest("Invalid limit", f"limit must be a whole number from 1 to {MAX_PAGE}")
    return limit


def _after(query: Any) -> tuple[str, str] | None:
    cursor = query.get("after")
    if cursor is None:
        return None
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise BadRequest("Invalid after", "after must be the `next` of the page before")
    return match.group(1), match.group(2)


def item(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["content_sha256"],
        "at": row["at"] or None,
        "sentiment": row["sentiment"],
        "categories": json.loads(row["categories"]),
        "record": json.loads(row["record"]),
    }


async def feedback(request: web.Request) -> web.StreamResponse:
    ingest = request.app[INGEST]
    check_admin(request)
    where = feedback_filter(request.query)
    kind = request.query.get("format", "json")
    if kind not in FORMATS:
        raise BadRequest("Invalid format", "format must be json, csv or jsonl")
    if kind != "json":
        return await _export(request, ingest, where, kind)
    limit = _limit(request.query)
    storage = ingest.db.storage
    items = [item(row) for row in await ingest.db.run(storage.feedback_page, where, limit, _after(request.query))]
    conversations = [c for c in (i["record"].get("conversation_id") for i in items) if isinstance(c, str)]
    held = await ingest.db.run(storage.with_transcripts, conversations)
    for entry in items:
        entry["has_transcript"] = entry["record"].get("conversation_id") in held
    last = items[-1] if len(items) == limit else None
    body = {"feedback": items, "next": f"{last['at'] or ''},{last['id']}" if last else None}

    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def pages_of(ingest: Ingest, where: FeedbackFilter) -> AsyncIterator[list[dict[str, Any]]]:
    """Every matching row, newest first, EXPORT_PAGE at a time."""
    after: tuple[str, str] | None = None
    while rows := await ingest.db.run(ingest.db.storage.feedback_page, where, EXPORT_PAGE, after):
        yield rows
        after = (rows[-1]["at"], rows[-1]["content_sha256"])
        if len(rows) < EXPORT_PAGE:
            return


def csv_line(row: dict[str, Any]) -> str:
    """One CSV row; a text cell a spreadsheet would take for a formula starts with a quote instead."""
    record = json.loads(row["record"])
    values = {
        "timestamp": row["at"],
        "sentiment": "" if row["sentiment"] is None else str(row["sentiment"]),
        "categories": ";".join(json.loads(row["categories"])),
    }
    for name in ("user_feedback", "user_question", "llm_response", "conversation_id", "user_id"):
        value = record.get(name)
        values[name] = _safe_cell(value if isinstance(value, str) else "")
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([values[name] for name in CSV_COLUMNS])
    return out.getvalue()


def csv_header() -> str:
    return ",".join(CSV_COLUMNS) + "\r\n"


def _safe_cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def _export(request: web.Request, ingest: Ingest, where: FeedbackFilter, kind: str) -> web.StreamResponse:
    content_type = "text/csv" if kind == "csv" else "application/x-ndjson"
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{content_type}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="feedback.{kind}"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    if kind == "csv":
        await response.write(csv_header().encode())
    async for rows in pages_of(ingest, where):  # one write a page: the socket's pace, not a row's
        lines = [csv_line(row) if kind == "csv" else json.dumps(json.loads(row["record"])) + "\n" for row in rows]
        await response.write("".join(lines).encode())
    await response.write_eof()
    return response


def read_members(archive: Path, members: set[str]) -> list[dict[str, Any]]:
    """These members of one archive, parsed (blocking); those no longer in it are skipped."""
    found = []
    with contextlib.suppress(FileNotFoundError), tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.name in members and (extracted := tar.extractfile(member)) is not None:
                found.append(json.loads(extracted.read()))
    return found


async def transcripts(request: web.Request) -> web.Response:
    """`GET /api/admin/v1/conversations/{conversation_id}/transcripts`: the conversation's transcripts the
    ingest holds, read from their archives, oldest first."""
    ingest = request.app[INGEST]
    check_admin(request)
    conversation_id = request.match_info["conversation_id"]
    by_archive: dict[str, set[str]] = {}
    for archive, member in await ingest.db.run(ingest.db.storage.transcript_members, conversation_id):
        by_archive.setdefault(archive, set()).add(member)
    records = []
    for archive, members in by_archive.items():
        records += await asyncio.to_thread(read_members, ingest.archives.path(archive), members)
    records.sort(key=lambda r: str((r.get("metadata") or {}).get("timestamp", "")))
    return web.json_response(
        {"conversation_id": conversation_id, "transcripts": records}, headers={"Cache-Control": "no-store"}
    )
