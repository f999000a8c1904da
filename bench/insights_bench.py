"""The insights (issue 27) at 1,000,000 indexed records, on SQLite and on PostgreSQL.

The index is filled the fast way (generated rows: 1,000 uploads over a year, 600,000 transcripts in 200,000
conversations, 400,000 feedback records, a year of telemetry from 200 installations of 5 models), then the
per-day counts are built from it as at the first start after the upgrade (`rebuild_insights`, timed).

Figures, each a median: the one aggregate query the insights run (`daily_counts` of a range) for 30 and 365
days; the whole page from a real ingest (the JSON, then its 8 charts fetched at once as a browser does);
beside two baselines from the same run: the ingest's `/liveness` round trip, and the same numbers computed
without the counts (GROUP BY over the indexed rows), which is what the counts save. Target: each under 200 ms.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.postgres import PASSWORD, PostgresServer  # noqa: E402

from common import data_volume, free_port, stop  # noqa: E402
from ingest.postgres_storage import PostgresStorage  # noqa: E402
from ingest.sql_storage import SQLStorage  # noqa: E402
from ingest.sqlite_storage import SQLiteStorage  # noqa: E402
from ingest_bench import start_ingest  # noqa: E402
from lightspeed_common.config_base import DatabaseConfig  # noqa: E402

TARGET_MS = 200.0
ADMIN = "bench-admin-key"
RUNS = 15
CHARTS = ("received", "uploads", "feedback", "categories", "models", "conversations", "turns", "telemetry")
LAST = "2026-11-30"
RANGES = {"30 days": "2026-11-01", "365 days": "2025-12-01"}

# Generated rows: `{n}` is a series of integers in each dialect, `{hex}` an integer as 64 hexadecimal digits,
# `{day}` the first day plus a number of days.
_DIALECTS = {
    "sqlite": {
        "n": "(WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {last}) SELECT i FROM s)",
        "hex": "printf('%064x', {x})",
        "day": "date('2025-12-01', '+' || ({x}) || ' days')",
    },
    "postgresql": {
        "n": "(SELECT generate_series(0, {last}) AS i)",
        "hex": "lpad(to_hex({x}), 64, '0')",
        "day": "(DATE '2025-12-01' + ({x}))::text",
    },
}
_FILL = [
    "INSERT INTO uploads (request_id, received_at, service, category, archive, bytes, sha256, records, new_records, "
    "duplicate_records, users_indexed) SELECT 'u' || i, {day_of_upload} || 'T12:00:00Z', 'lightspeed', 'periodic', "
    "'a/' || i, 1000, 'x', 1000, 1000, 0, 1 FROM {n_uploads} AS n",
    "INSERT INTO records (content_sha256, request_id, member, kind, conversation_id, record_timestamp) "
    "SELECT {hex_i}, 'u' || (i / 1000), 'm/' || i, CASE WHEN i % 5 < 3 THEN 'transcripts' ELSE 'feedback' END, "
    "'c' || (i / 5), {day_of_record} || 'T10:00:00Z' FROM {n_records} AS n",
    "INSERT INTO feedback (content_sha256, request_id, at, day, sentiment, categories, user_feedback, record, model) "
    "SELECT {hex_i}, 'u' || (i / 1000), {day_of_record} || 'T10:00:00Z', {day_of_record}, "
    "CASE WHEN i % 7 < 5 THEN 1 ELSE -1 END, CASE WHEN i % 7 >= 5 AND i % 2 = 0 THEN '[\"incorrect\"]' ELSE '[]' END, "
    "'fine', '{{}}', CASE WHEN i % 3 = 0 THEN 'openai/gpt-4o' ELSE 'watsonx/granite' END "
    "FROM {n_records} AS n WHERE i % 5 >= 3",
    "INSERT INTO models (id, model_key, model_name, model_source, embedding_dimension, distance_metric, "
    "normalization, modalities, device_type) SELECT i + 1, 'k' || i, 'model-' || i, 'huggingface', 384, 'cosine', "
    "'l2', 'text', 'cpu' FROM {n_models} AS n",
    "INSERT INTO contributions (model_id, contributor, day, events, load_failures, inference_failures, "
    "last_event_at) SELECT i % 5 + 1, 'c' || (i / 5 % 200), {day_of_contribution}, 3, 0, 0, 'x' "
    "FROM {n_contributions} AS n",
]


def fill(storage: SQLStorage, dialect: str) -> None:
    words = _DIALECTS[dialect]
    values = {
        "n_uploads": words["n"].format(last=999),
        "n_records": words["n"].format(last=999_999),
        "n_models": words["n"].format(last=4),
        "n_contributions": words["n"].format(last=365 * 1000 - 1),
        "hex_i": words["hex"].format(x="i"),
        "day_of_upload": words["day"].format(x="i * 365 / 1000"),
        "day_of_record": words["day"].format(x="(i / 1000) * 365 / 1000"),
        "day_of_contribution": words["day"].format(x="i / 1000"),
    }

    def work(session: Any) -> None:
        for statement in _FILL:
            sql = statement.format(**values)
            session.execute(sql.replace("%", "%%") if dialect == "postgresql" else sql)  # psycopg's placeholders

    storage._write(work)


def median_ms(call: Callable[[], Any]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def page_ms(port: int, since: str) -> tuple[float, float]:
    """Median ms of the whole page (JSON, then its charts at once) and of /liveness."""
    base, query = f"http://127.0.0.1:{port}", f"since={since}&until={LAST}"
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def get(path: str) -> None:
            async with session.get(f"{base}{path}") as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()

        async def page() -> None:
            await get(f"/api/admin/v1/insights?{query}")
            await asyncio.gather(*(get(f"/api/admin/v1/insights/{c}.svg?{query}&width=600") for c in CHARTS))

        async def timed(call: Callable[[], Any]) -> float:
            times = []
            for _ in range(RUNS):
                started = time.perf_counter()
                await call()
                times.append((time.perf_counter() - started) * 1000)
            return statistics.median(times)

        await page()  # warm
        return await timed(page), await timed(lambda: get("/liveness"))


def naive_ms(storage: SQLStorage, since: str) -> float:
    """The feedback and records charts' numbers without the counts: grouped over the indexed rows."""

    def both() -> None:
        storage._read(
            "SELECT day, sentiment, COUNT(*) FROM feedback WHERE day >= ? AND day <= ? GROUP BY day, sentiment",
            (since, LAST),
        )
        storage._read(
            "SELECT substr(u.received_at, 1, 10), r.kind, COUNT(*) FROM records r JOIN uploads u "
            "ON u.request_id = r.request_id WHERE u.received_at >= ? AND u.received_at <= ? GROUP BY 1, 2",
            (since, f"{LAST}T23:59:59Z"),
        )

    return median_ms(both)


def measure(name: str, storage: SQLStorage, dialect: str, workdir: Path, database: dict[str, Any] | None) -> bool:
    started = time.perf_counter()
    fill(storage, dialect)
    filled = time.perf_counter() - started
    started = time.perf_counter()
    storage.rebuild_insights()
    built = time.perf_counter() - started
    print(f"  {name}: 1,000,000 records generated in {filled:.0f} s; counts built from them in {built:.1f} s")
    ok = True
    port = free_port()
    proc = start_ingest(workdir, f"ingest-{dialect}", port, database, extra={"admin_key": ADMIN})
    try:
        for label, since in RANGES.items():
            query = median_ms(lambda since=since: storage.daily_counts(since, LAST))  # type: ignore[misc]
            naive = naive_ms(storage, since)
            page, liveness = asyncio.run(page_ms(port, since))
            good = query < TARGET_MS and page < TARGET_MS
            ok = ok and good
            print(
                f"    {label:<8}: query {query:6.1f} ms, page (JSON + 8 charts) {page:6.1f} ms "
                f"{'PASS' if good else 'FAIL'} | baselines: /liveness {liveness:5.1f} ms, "
                f"same numbers without the counts {naive:7.1f} ms"
            )
    finally:
        stop(proc)
    return ok


def main() -> bool:
    print(f"== insights at 1,000,000 indexed records (target: each query and the page under {TARGET_MS:.0f} ms)")
    with data_volume("8G") as volume:
        (volume / "ingest-sqlite").mkdir()  # the SQLite ingest's state directory (start_ingest's name)
        sqlite = SQLiteStorage(volume / "ingest-sqlite" / "ingest.sqlite3")
        ok = True
        try:
            ok = measure("SQLite", sqlite, "sqlite", volume, None) and ok
        finally:
            sqlite.close()
        pg_parent = volume / "postgres"
        pg_parent.mkdir(mode=0o755)
        server = PostgresServer(parent=pg_parent, durable=True)
        try:
            database = server.create_database()
            section = {"url": server.url(database), "password_file": str(server.password_file)}
            pg = PostgresStorage(DatabaseConfig(url=server.url(database)), PASSWORD)
            try:
                ok = measure("PostgreSQL", pg, "postgresql", volume, section) and ok
            finally:
                pg.close()
        finally:
            server.close()
    print(f"  insights: {'PASS' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    main()
