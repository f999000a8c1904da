"""The ingest's erasure queries (issue 26), written once for both backends; `SQLStorage` includes them.

`upload_users` says which users' records each upload holds, so an erasure reads only the archives that
hold the user (and every archive indexed before the table existed: `uploads.users_indexed` 0). An
erasure is a row of `erasures`, pending until applied; once done its user hash is cleared, so the log
keeps when, how and how much, and nothing that names the user.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ingest.sql_insights import InsightsQueries, Scope, upload_scope
from ingest.storage import PendingErasure, RecordInfo, Rewrite, iso
from lightspeed_common.records import ERASURE_FOLDER
from lightspeed_common.sql import Session


class ErasureQueries(InsightsQueries):
    @staticmethod
    def _index_users(session: Session, request_id: str, records: list[RecordInfo], now: datetime) -> None:
        """Inside an upload's transaction: the users its records belong to, and the erasures it carries."""
        owners = sorted({r.user_hash for r in records if r.user_hash is not None})
        session.executemany(
            "INSERT INTO upload_users (user_hash, request_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(owner, request_id) for owner in owners],
        )
        session.execute("UPDATE uploads SET users_indexed = 1 WHERE request_id = ?", (request_id,))
        for record in records:
            if record.kind == ERASURE_FOLDER:
                session.execute(
                    "INSERT INTO erasures (user_hash, erased_at, received_at, via) VALUES (?, ?, ?, 'collector')",
                    (record.user_hash, record.timestamp, iso(now)),
                )

    def request_erasure(self, user_hash: str, erased_at: datetime, via: str, now: datetime) -> None:
        """An erasure asked for here (the admin route): pending until applied."""
        self._write(
            lambda session: session.execute(
                "INSERT INTO erasures (user_hash, erased_at, received_at, via) VALUES (?, ?, ?, ?)",
                (user_hash, erased_at.isoformat(), iso(now), via),
            )
        )

    def pending_erasures(self) -> list[PendingErasure]:
        rows = self._read("SELECT id, user_hash, erased_at FROM erasures WHERE done_at IS NULL ORDER BY id")
        return [PendingErasure(int(row["id"]), row["user_hash"], row["erased_at"]) for row in rows]

    def erasure_uploads(self, user_hash: str) -> list[tuple[str, str]]:
        """(request id, archive) of every upload that may hold the user's records."""
        rows = self._read(
            "SELECT request_id, archive FROM uploads WHERE users_indexed = 0 OR request_id IN "
            "(SELECT request_id FROM upload_users WHERE user_hash = ?) ORDER BY request_id",
            (user_hash,),
        )
        return [(row["request_id"], row["archive"]) for row in rows]

    def erasure_rewritten(self, rewrites: list[tuple[str, Rewrite]]) -> None:
        """These uploads' archives were rewritten without the erased records (or are gone): their index
        follows, in one transaction."""

        def work(session: Session) -> None:
            for request_id, rewrite in rewrites:
                self._rewritten(session, request_id, rewrite)

        self._write(work)

    def _rewritten(self, session: Session, request_id: str, rewrite: Rewrite) -> None:
        """Reconciled with the file as it is: also right after a crash between the rewrite and this."""
        if not rewrite.kept:  # the upload goes, its rows with it
            sql = "DELETE FROM uploads WHERE request_id = ?"
            self._forget_rows(session, upload_scope(request_id), lambda: session.execute(sql, (request_id,)).rowcount)
            return
        condition, args = self._one_of("content_sha256", rewrite.kept)

        def delete_records() -> int:
            return sum(
                session.execute(
                    f"DELETE FROM {table} WHERE request_id = ? AND NOT ({condition})",  # noqa: S608 - fixed names
                    [request_id, *args],
                ).rowcount
                for table in ("records", "feedback")
            )

        scope = Scope(f"u.request_id = ? AND NOT (x.{condition})", [request_id, *args], uploads=False)
        self._forget_rows(session, scope, delete_records)
        session.execute(
            "UPDATE uploads SET bytes = ?, sha256 = ?, records = ?, users_indexed = 1, "
            "new_records = (SELECT COUNT(*) FROM records WHERE records.request_id = uploads.request_id) "
            "WHERE request_id = ?",
            (rewrite.size, rewrite.sha256, len(rewrite.kept), request_id),
        )
        session.execute(
            "UPDATE uploads SET duplicate_records = records - new_records WHERE request_id = ?", (request_id,)
        )
        session.execute("DELETE FROM upload_users WHERE request_id = ?", (request_id,))
        session.executemany(
            "INSERT INTO upload_users (user_hash, request_id) VALUES (?, ?)",
            [(owner, request_id) for owner in sorted(rewrite.owners)],
        )

    def finish_erasure(self, erasure_id: int, counts: dict[str, int], now: datetime) -> None:
        """Done: the counts kept, the user hash cleared."""
        self._write(
            lambda session: session.execute(
                "UPDATE erasures SET done_at = ?, user_hash = NULL, records = ?, archives_rewritten = ?, "
                "archives_removed = ? WHERE id = ? AND done_at IS NULL",
                (iso(now), counts["records"], counts["archives_rewritten"], counts["archives_removed"], erasure_id),
            )
        )
        self._forget_history()

    def _forget_history(self) -> None:
        """After an erasure: what the backend must do so deleted rows are gone from its files too."""

    def erasure_log(self, limit: int) -> list[dict[str, Any]]:
        """The erasures received, newest first: when, how, what they removed; none names the user."""
        return self._read(
            "SELECT id, erased_at, received_at, via, done_at, records, archives_rewritten, archives_removed "
            "FROM erasures ORDER BY id DESC LIMIT ?",
            (limit,),
        )
