"""The insights' per-day roll-ups (issue 27), kept with the index on both backends; `SQLStorage` includes them.

`daily_counts` holds one count per (series, day, label) (spread over a few rows on PostgreSQL: `_add_counts`):
records received per day by kind, uploads per day, uploads refused per day by outcome, feedback per day by
sentiment, by category and by the model that answered its conversation, conversations started per day and by
their number of turns, telemetry events per day by model. The insights page reads a range of it, a few rows
a day whatever the index holds.

The counts always equal what `rebuild_insights` computes from the index as it is: an upload adds what its
rows count for (`_rows_counts` of its scope, in its own transaction), an erasure or retention subtracts what
the rows it deletes counted for, and the conversations they touch are counted again
(`_refresh_conversations`). The same queries serve all three, so they cannot drift apart.

`conversation_turns` keeps, per conversation with a transcript here, the day of its first transcript, its number
of transcripts (turns), and the model of its latest one, which the conversation's feedback is counted under.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ingest.storage import RecordInfo, UploadInfo, iso
from lightspeed_common.sql import Session, SQLDatabase

CHUNK = 500
SERIES = (
    "records",
    "uploads",
    "refused",
    "feedback",
    "category",
    "model_positive",
    "model_negative",
    "model_none",
    "conversations",
    "turns",
    "telemetry",
)
PLACEHOLDER_ROW = "(?, '', 0)"  # a conversation not counted yet
Counts = Counter[tuple[str, str, str]]  # (series, day, label) -> how many

# A record's day: the date its timestamp is written with, else the day its upload was received.
_RECORD_DAY = (
    "CASE WHEN substr(x.record_timestamp, 5, 1) = '-' AND substr(x.record_timestamp, 8, 1) = '-' "
    "AND length(x.record_timestamp) >= 10 THEN substr(x.record_timestamp, 1, 10) "
    "ELSE substr(u.received_at, 1, 10) END"
)
_SENTIMENT = "CASE WHEN x.sentiment > 0 THEN 'positive' WHEN x.sentiment < 0 THEN 'negative' ELSE 'none' END"
_FEEDBACK_MODEL = (
    "UPDATE feedback SET model = (SELECT c.model FROM records r JOIN conversation_turns c "
    "ON c.conversation_id = r.conversation_id WHERE r.content_sha256 = feedback.content_sha256)"
)


# Our own generator, not the random module's shared one: drawing from that one in a request's thread
# changed state that other code in the process (hypothesis, in the tests) relies on being left alone.
_SHARDS_PICKED = random.Random()  # noqa: S311 - spreading writers, not a secret


@dataclass(frozen=True)
class Scope:
    """Rows of the index the counts gain or lose: a condition on `u` (an upload) and `x` (a record or
    feedback row of it), and whether whole uploads are in it (False: some records of an upload)."""

    condition: str
    args: list[Any] = field(default_factory=list)
    uploads: bool = True


def upload_scope(request_id: str) -> Scope:
    return Scope("u.request_id = ?", [request_id])


def record_day(timestamp: str | None, received_day: str) -> str:
    """A record's day as `_RECORD_DAY` says it: the date its timestamp is written with, else its upload's day."""
    if timestamp is not None and len(timestamp) >= 10 and timestamp[4] == "-" and timestamp[7] == "-":
        return timestamp[:10]
    return received_day


def _plus(chunk: list[str], old: list[Any], added: Mapping[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
    """The conversations of `chunk` as they were (`old`: id, first day, turns) with an upload's transcripts."""
    known = {conversation: (first_day, int(turns)) for conversation, first_day, turns in old}
    new = {}
    for conversation in chunk:
        day, more = added[conversation]
        first_day, turns = known.get(conversation, (day, 0))
        new[conversation] = (min(first_day, day) if turns else day, turns + more)
    return new


class InsightsQueries(SQLDatabase):
    LOCK_ROWS = ""  # the dialect's row lock on a SELECT (PostgreSQL, several writers: FOR UPDATE; SQLite: none)
    SHARDS = 1  # rows per count (`_add_counts`): one writer at a time on SQLite

    def _one_of(self, column: str, values: Any) -> tuple[str, list[Any]]:
        raise NotImplementedError

    # -- keeping the counts ---------------------------------------------------------------------------------

    def _index_insights(self, session: Session, upload: UploadInfo, records: list[RecordInfo], new: set[str]) -> None:
        """Inside an upload's transaction, after its rows are in: its conversations, its feedback's models,
        and the counts its rows add."""
        request_id, received_day = upload.request_id, iso(upload.received_at)[:10]
        latest: dict[str, tuple[str, str]] = {}  # conversation -> (timestamp, model) of its newest transcript
        added: dict[str, tuple[str, int]] = {}  # conversation -> (first day, turns) of its new transcripts
        for record in records:
            conversation = record.conversation_id
            if record.kind != "transcripts" or conversation is None or record.content_sha256 not in new:
                continue
            day = record_day(record.timestamp, received_day)
            first, turns = added.get(conversation, (day, 0))
            added[conversation] = (min(first, day), turns + 1)
            if record.model is not None:
                moment = record.timestamp or ""
                if conversation not in latest or latest[conversation][0] <= moment:
                    latest[conversation] = (moment, record.model)
        self._refresh_conversations(session, added, latest, added)
        if any(record.feedback is not None and record.content_sha256 in new for record in records):
            session.execute(f"{_FEEDBACK_MODEL} WHERE request_id = ?", (request_id,))
        self._add_counts(session, self._rows_counts(session, upload_scope(request_id)))

    def _forget_rows(self, session: Session, scope: Scope, delete: Callable[[], int]) -> int:
        """Delete the rows of `scope` (`delete`, which says how many it deleted) and take away what they counted
        for: the conversations whose transcripts they held are counted again. Rows are locked in the order an
        upload locks them (records, conversations, counts), so writers on PostgreSQL never wait in a cycle."""
        counts = self._rows_counts(session, scope)
        rows = session.execute(
            "SELECT DISTINCT x.conversation_id FROM records x JOIN uploads u ON u.request_id = x.request_id "  # noqa: S608
            f"WHERE {scope.condition} AND x.kind = 'transcripts' AND x.conversation_id IS NOT NULL",
            scope.args,
        )
        conversations = {row[0] for row in rows}
        deleted = delete()
        self._refresh_conversations(session, conversations)
        self._add_counts(session, counts, -1)
        return deleted

    @staticmethod
    def _rows_counts(session: Session, scope: Scope) -> Counts:
        """What the uploads, records and feedback rows of `scope` count for."""
        counts: Counts = Counter()
        where = scope.condition
        if scope.uploads:
            for day, n in session.execute(
                f"SELECT substr(u.received_at, 1, 10), COUNT(*) FROM uploads u WHERE {where} GROUP BY 1",  # noqa: S608
                scope.args,
            ):
                counts["uploads", day, ""] += int(n)
        for day, kind, n in session.execute(
            "SELECT substr(u.received_at, 1, 10), x.kind, COUNT(*) FROM records x "  # noqa: S608
            f"JOIN uploads u ON u.request_id = x.request_id WHERE {where} GROUP BY 1, 2",
            scope.args,
        ):
            counts["records", day, kind] += int(n)
        for day, sentiment, model, categories, n in session.execute(
            f"SELECT x.day, {_SENTIMENT}, x.model, x.categories, COUNT(*) FROM feedback x "  # noqa: S608
            f"JOIN uploads u ON u.request_id = x.request_id WHERE {where} AND x.day <> '' GROUP BY 1, 2, 3, 4",
            scope.args,
        ):
            counts["feedback", day, sentiment] += int(n)
            counts[f"model_{sentiment}", day, model or ""] += int(n)
            for category in json.loads(categories):
                counts["category", day, category] += int(n)
        return counts

    def _add_counts(self, session: Session, counts: Mapping[tuple[str, str, str], int], sign: int = 1) -> None:
        """Add `counts` (times `sign`) to one shard of each count, in key order. Today's few counts are
        touched by every writer: on PostgreSQL each transaction takes one of `SHARDS` rows of a count (a read
        sums them), so writers on several nodes seldom wait for one another's commit. A count brought to zero
        by a subtraction is removed."""
        shard = _SHARDS_PICKED.randrange(self.SHARDS)  # spreading writers, not a secret
        rows = sorted((*key, shard, sign * n) for key, n in counts.items() if n)
        session.executemany(
            "INSERT INTO daily_counts (series, day, label, shard, n) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (series, day, label, shard) DO UPDATE SET n = daily_counts.n + excluded.n",
            rows,
        )
        session.executemany(
            "DELETE FROM daily_counts WHERE series = ? AND day = ? AND label = ? AND shard = ? AND n = 0",
            [row[:4] for row in rows if row[4] < 0],
        )

    def _refresh_conversations(
        self,
        session: Session,
        ids: Iterable[str],
        latest: Mapping[str, tuple[str, str]] | None = None,
        added: Mapping[str, tuple[str, int]] | None = None,
    ) -> None:
        """Count these conversations again (their rows locked first, so two writers count one after the
        other), moving their counts: from their transcripts in the index, or, with `added` (an upload's
        new transcripts: first day and how many), from what they were plus those. `latest` (timestamp,
        model) of a transcript just added names the model of a conversation unless it has a newer one."""
        ordered = sorted(ids)
        counts: Counts = Counter()
        for start in range(0, len(ordered), CHUNK):
            chunk = ordered[start : start + CHUNK]
            if self.LOCK_ROWS:  # several writers: a row to lock for each conversation, new ones too
                session.execute(
                    "INSERT INTO conversation_turns (conversation_id, first_day, turns) "  # noqa: S608 - placeholders
                    f"VALUES {', '.join([PLACEHOLDER_ROW] * len(chunk))} ON CONFLICT (conversation_id) DO NOTHING",
                    chunk,
                )
            in_chunk, args = self._one_of("conversation_id", chunk)
            old = session.execute(
                f"SELECT conversation_id, first_day, turns FROM conversation_turns WHERE {in_chunk} "  # noqa: S608
                f"ORDER BY conversation_id{self.LOCK_ROWS}",
                args,
            ).fetchall()
            new = self._counted(session, chunk) if added is None else _plus(chunk, old, added)
            for _, day, turns in old:
                if turns:
                    counts["conversations", day, ""] -= 1
                    counts["turns", day, str(turns)] -= 1
            for day, turns in new.values():
                counts["conversations", day, ""] += 1
                counts["turns", day, str(turns)] += 1
            self._store_conversations(session, chunk, new, latest or {})
        self._add_counts(session, counts)

    def _counted(self, session: Session, chunk: list[str]) -> dict[str, tuple[str, int]]:
        """First day and turns of each conversation of `chunk`, from its transcripts in the index."""
        in_records, args = self._one_of("x.conversation_id", chunk)
        return {
            conversation: (day, int(turns))
            for conversation, day, turns in session.execute(
                f"SELECT x.conversation_id, MIN({_RECORD_DAY}), COUNT(*) FROM records x "  # noqa: S608
                "JOIN uploads u ON u.request_id = x.request_id "
                f"WHERE x.kind = 'transcripts' AND {in_records} GROUP BY x.conversation_id",
                args,
            )
        }

    @staticmethod
    def _store_conversations(
        session: Session, chunk: list[str], new: dict[str, tuple[str, int]], latest: Mapping[str, tuple[str, str]]
    ) -> None:
        """Each conversation's new first day and turns, and the model of a newer transcript, in one statement;
        those left without a transcript removed."""
        session.executemany(
            "DELETE FROM conversation_turns WHERE conversation_id = ?", [(c,) for c in chunk if c not in new]
        )
        if not new:
            return
        rows = [(c, day, turns, *latest.get(c, (None, None))) for c, (day, turns) in sorted(new.items())]
        session.execute(
            "INSERT INTO conversation_turns (conversation_id, first_day, turns, last_at, model) "  # noqa: S608
            f"VALUES {', '.join(['(?, ?, ?, ?, ?)'] * len(rows))} ON CONFLICT (conversation_id) DO UPDATE SET "
            "first_day = excluded.first_day, turns = excluded.turns, "
            "model = CASE WHEN excluded.last_at IS NOT NULL AND (conversation_turns.last_at IS NULL "
            "OR conversation_turns.last_at <= excluded.last_at) THEN excluded.model ELSE conversation_turns.model END, "
            "last_at = CASE WHEN excluded.last_at IS NOT NULL AND (conversation_turns.last_at IS NULL "
            "OR conversation_turns.last_at <= excluded.last_at) THEN excluded.last_at "
            "ELSE conversation_turns.last_at END",
            [value for row in rows for value in row],
        )

    def add_refusal(self, at: str, request_id: str, outcome: str, size: int | None, reason: str) -> None:
        """An upload refused for good (its sender quarantines it): kept, and counted on its day."""

        def work(session: Session) -> None:
            session.execute(
                "INSERT INTO refusals (received_at, request_id, outcome, bytes, reason) VALUES (?, ?, ?, ?, ?)",
                (at, request_id, outcome, size, reason[:500]),
            )
            self._add_counts(session, {("refused", at[:10], outcome): 1})

        self._write(work)

    def _forget_refusals(self, session: Session, before: str) -> None:
        self._add_counts(session, self._refusal_counts(session, "received_at < ?", [before]), -1)
        session.execute("DELETE FROM refusals WHERE received_at < ?", (before,))

    @staticmethod
    def _refusal_counts(session: Session, condition: str, args: list[Any]) -> Counts:
        counts: Counts = Counter()
        for day, outcome, n in session.execute(
            f"SELECT substr(received_at, 1, 10), outcome, COUNT(*) FROM refusals WHERE {condition} GROUP BY 1, 2",  # noqa: S608
            args,
        ):
            counts["refused", day, outcome] += int(n)
        return counts

    @staticmethod
    def _contribution_counts(session: Session, condition: str, args: list[Any]) -> Counts:
        """The events of the contributions `condition` selects (on `c`), per day and model name."""
        counts: Counts = Counter()
        for day, name, events in session.execute(
            "SELECT c.day, m.model_name, SUM(c.events) FROM contributions c "  # noqa: S608
            f"JOIN models m ON m.id = c.model_id WHERE {condition} GROUP BY 1, 2",
            args,
        ):
            counts["telemetry", day, name] += int(events)
        return counts

    # -- rebuilding -----------------------------------------------------------------------------------------

    def rebuild_insights(self, only_if_unbuilt: bool = False) -> bool:
        """Compute every count again from the index (after the upgrade that added them, or on request);
        `only_if_unbuilt`: only when no node did yet. Whether it ran."""
        return self._write(lambda session: self._rebuild(session, only_if_unbuilt))

    def insights_built(self) -> bool:
        """Whether the counts were built (after the upgrade that added them, by this node or another)."""
        return bool(self._read("SELECT built FROM insights_state WHERE name = 'rollups'")[0]["built"])

    def _rebuild(self, session: Session, only_if_unbuilt: bool) -> bool:
        claimed = session.execute("UPDATE insights_state SET built = 1 WHERE name = 'rollups' AND built = 0")
        if only_if_unbuilt and claimed.rowcount == 0:
            return False  # built already (by this node, or another one that held the row first)
        session.execute("DELETE FROM daily_counts")
        session.execute("UPDATE conversation_turns SET turns = 0")  # counted for nothing now
        ids = session.execute(
            "SELECT conversation_id FROM records WHERE kind = 'transcripts' AND conversation_id IS NOT NULL "
            "UNION SELECT conversation_id FROM conversation_turns"
        )
        self._refresh_conversations(session, [row[0] for row in ids])
        session.execute(f"{_FEEDBACK_MODEL} WHERE model IS NULL")
        counts = self._rows_counts(session, Scope("TRUE"))
        counts.update(self._contribution_counts(session, "TRUE", []))
        counts.update(self._refusal_counts(session, "TRUE", []))
        self._add_counts(session, counts)
        return True

    # -- reading --------------------------------------------------------------------------------------------

    def daily_counts(self, since: str, until: str, series: tuple[str, ...] = SERIES) -> list[tuple[str, str, str, int]]:
        """The counts of `series` on the days from `since` to `until` (inclusive): (series, day, label, n)."""
        names = ", ".join(["?"] * len(series))
        rows = self._read(
            f"SELECT series, day, label, SUM(n) AS n FROM daily_counts WHERE series IN ({names}) "  # noqa: S608
            "AND day >= ? AND day <= ? GROUP BY series, day, label",
            [*series, since, until],
        )
        return [(row["series"], row["day"], row["label"], int(row["n"])) for row in rows]

    def all_daily_counts(self) -> dict[tuple[str, str, str], int]:
        """The whole table (tests compare it with a rebuild)."""
        rows = self._read("SELECT series, day, label, SUM(n) AS n FROM daily_counts GROUP BY series, day, label")
        return {(row["series"], row["day"], row["label"]): int(row["n"]) for row in rows if row["n"]}

    def recent_refusals(self, since: str, before: str, limit: int) -> list[dict[str, Any]]:
        """The latest uploads refused from day `since` up to (not including) day `before`."""
        return self._read(
            "SELECT received_at, request_id, outcome, bytes, reason FROM refusals "
            "WHERE received_at >= ? AND received_at < ? ORDER BY received_at DESC, request_id LIMIT ?",
            (since, before, limit),
        )
