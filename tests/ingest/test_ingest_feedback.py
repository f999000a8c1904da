"""The feedback browser's API and the export (issue 27), on SQLite and on PostgreSQL: filters, pages,
CSV and JSON Lines of the filtered set equal to the records sent, and erasure and retention reach it."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from ingest.app import enforce_retention
from ingest.context import INGEST
from ingest.erasure import apply_pending
from tests.ingest_support import ADMIN_KEY, Client, IngestFactory, admin_get, admin_headers, member, tar_gz, upload
from tests.support import assert_left_midway, http_request, leave_after_the_status_line, on_terminal
from tests.telemetry_support import now

ALICE, BOB = "a1" * 32, "b2" * 32


def feedback(n: int, day: str, sentiment: int, user: str = BOB, **more: Any) -> dict[str, Any]:
    return {
        "user_id": user,
        "timestamp": f"{day} 10:{n % 60:02d}:00+00:00",
        "conversation_id": f"c-{n}",
        "user_question": f"question {n}",
        "llm_response": f"answer {n}",
        "sentiment": sentiment,
        "user_feedback": more.pop("text", f"feedback {n}"),
        "categories": more.pop("categories", None),
        **more,
    }


async def send(client: Client, records: list[dict[str, Any]], batch: str) -> None:
    entries = []
    for n, record in enumerate(records):
        data = json.dumps(record).encode()
        entries.append((member(f"feedback/{batch}-{n}.json", data), data))
    resp = await upload(client, tar_gz(entries), batch)
    assert resp.status == 202, await resp.text()


async def week(client: Client) -> list[dict[str, Any]]:
    """7 positive and 3 negative feedback on 2026-11-20, and 2 the day after (one of them alice's)."""
    records = [feedback(n, "2026-11-20", 1) for n in range(7)]
    records += [feedback(n, "2026-11-20", -1, categories=["incorrect", "incomplete"]) for n in range(7, 10)]
    records += [
        feedback(10, "2026-11-21", -1, categories=["unsafe"], text="=SUM(A1) the Disk, it told me"),
        feedback(11, "2026-11-21", 1, user=ALICE, text="Great, thanks"),
    ]
    await send(client, records[:6], "batch-1")
    await send(client, records[6:], "batch-2")
    return records


async def page(client: Client, query: str) -> dict[str, Any]:
    return await admin_get(client, f"/api/admin/v1/feedback?{query}")


async def test_filters_and_pages(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    sent = await week(client)
    everything = await page(client, "limit=500")
    assert [f["record"] for f in everything["feedback"]] == sorted(sent, key=lambda r: r["timestamp"], reverse=True)
    assert everything["next"] is None
    day = await page(client, "since=2026-11-20&until=2026-11-20")
    assert [f["sentiment"] for f in day["feedback"]].count(1) == 7
    assert [f["sentiment"] for f in day["feedback"]].count(-1) == 3
    assert len((await page(client, "sentiment=-1&category=incorrect"))["feedback"]) == 3
    assert [f["record"]["conversation_id"] for f in (await page(client, "q=sum(a1) THE disk"))["feedback"]] == ["c-10"]
    assert (await page(client, "q=100%25"))["feedback"] == []  # % is a character, not a wildcard
    walked, cursor = [], ""
    while True:
        got = await page(client, f"limit=5{cursor}")
        walked += [f["id"] for f in got["feedback"]]
        if got["next"] is None:
            break
        cursor = f"&after={got['next']}"
    assert walked == [f["id"] for f in everything["feedback"]]


async def test_bad_filters_are_refused_with_the_reason(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    for query, reason in (
        ("since=20-11-2026", "since must be a day"),
        ("sentiment=0", "sentiment must be 1 or -1"),
        ("category=not%20a%20word", "category must be a word"),
        ("limit=0", "limit must be a whole number"),
        ("after=yesterday", "after must be the `next`"),
        ("format=xml", "format must be json, csv or jsonl"),
    ):
        resp = await client.get(f"/api/admin/v1/feedback?{query}", headers=admin_headers())
        assert resp.status == 400, query
        assert reason in (await resp.json())["detail"]["cause"]
    assert (await client.get("/api/admin/v1/feedback")).status == 401


async def test_csv_and_json_lines_of_a_filtered_set_equal_the_records_sent(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    sent = await week(client)
    negative = sorted((r for r in sent if r["sentiment"] == -1), key=lambda r: r["timestamp"], reverse=True)
    resp = await client.get("/api/admin/v1/feedback?sentiment=-1&format=jsonl", headers=admin_headers())
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    assert [json.loads(line) for line in (await resp.text()).splitlines()] == negative
    resp = await client.get("/api/admin/v1/feedback?sentiment=-1&format=csv", headers=admin_headers())
    assert resp.headers["Content-Disposition"] == 'attachment; filename="feedback.csv"'
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [row["conversation_id"] for row in rows] == [r["conversation_id"] for r in negative]
    assert rows[0]["user_feedback"] == "'=SUM(A1) the Disk, it told me"  # a spreadsheet shows it, never runs it
    assert rows[0]["categories"] == "unsafe"
    assert rows[1]["categories"] == "incomplete;incorrect"
    assert [row["sentiment"] for row in rows] == ["-1"] * 4
    assert rows[1]["user_question"] == negative[1]["user_question"]


async def test_erasure_and_retention_reach_the_feedback(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    await week(client)
    resp = await client.post("/api/admin/v1/erasures", json={"user_hash": ALICE}, headers=admin_headers())
    assert (await resp.json())["erased"]["records"] == 1
    left = (await page(client, "limit=500"))["feedback"]
    assert len(left) == 11
    assert ALICE not in json.dumps(left)
    await apply_pending(client.app[INGEST])
    await enforce_retention(client.app[INGEST], now() + timedelta(days=400))
    assert (await page(client, "limit=500"))["feedback"] == []


async def test_the_command_line_exports_the_same_set_with_its_progress(
    make_ingest: IngestFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_ingest()
    await week(client)
    expected = await (
        await client.get("/api/admin/v1/feedback?since=2026-11-21&format=csv", headers=admin_headers())
    ).text()
    config = tmp_path / "ingest.yaml"
    config.write_text(json.dumps({"ingest": {"state_dir": str(tmp_path / "unused")}}))
    url = str(client.make_url("")).rstrip("/")
    command = [sys.executable, "-m", "ingest", "export", "feedback", "--config", str(config), "--url", url]
    monkeypatch.setenv("LIGHTSPEED_INGEST_ADMIN_KEY", ADMIN_KEY)
    target = tmp_path / "recent.csv"
    code, screen = await on_terminal([*command, "--since", "2026-11-21", "--output", str(target)], tmp_path / "out")
    assert code == 0, screen
    assert target.read_bytes() == expected.encode()
    assert target.stat().st_mode & 0o777 == 0o600
    assert "exporting feedback" in screen  # the bar, on the terminal
    code, _ = await on_terminal([*command, "--sentiment", "-1", "--format", "jsonl"], tmp_path / "negative.jsonl")
    assert code == 0
    assert len((tmp_path / "negative.jsonl").read_text().splitlines()) == 4
    monkeypatch.setenv("LIGHTSPEED_INGEST_ADMIN_KEY", "not-the-key")
    code, screen = await on_terminal([*command, "--output", str(tmp_path / "refused.csv")], tmp_path / "out")
    assert code == 1
    assert "the ingest refused (403)" in screen
    assert not (tmp_path / "refused.csv").exists()


async def test_a_feedback_links_to_its_conversations_transcripts_when_the_ingest_has_them(
    make_ingest: IngestFactory,
) -> None:
    client = await make_ingest()
    turns = [
        {
            "metadata": {"user_id": BOB, "conversation_id": "c-1", "timestamp": f"2026-11-20T10:0{n}:00Z"},
            "redacted_query": f"q{n}",
        }
        for n in (2, 1)
    ]
    entries = [
        (member(f"transcripts/{BOB}/c-1/t{n}.json", json.dumps(t).encode()), json.dumps(t).encode())
        for n, t in enumerate(turns)
    ]
    assert (await upload(client, tar_gz(entries), "transcripts")).status == 202
    await send(client, [feedback(1, "2026-11-20", 1), feedback(2, "2026-11-20", -1)], "feedback")
    listed = {f["record"]["conversation_id"]: f["has_transcript"] for f in (await page(client, ""))["feedback"]}
    assert listed == {"c-1": True, "c-2": False}
    held = await admin_get(client, "/api/admin/v1/conversations/c-1/transcripts")
    assert [t["redacted_query"] for t in held["transcripts"]] == ["q1", "q2"]  # oldest first
    assert (await admin_get(client, "/api/admin/v1/conversations/c-2/transcripts"))["transcripts"] == []


async def test_an_admin_who_leaves_in_the_middle_of_an_export_is_an_info_line(make_ingest: IngestFactory) -> None:
    """The export's status line went out, then the admin's client resets the connection: one info line, no
    `request_failed`, no error response written into the export (the middleware is the server's: both daemons
    are made with it)."""
    client = await make_ingest()
    records = [feedback(n, "2026-11-20", 1, text="x" * 8000) for n in range(400)]  # about 3 MB of JSON Lines
    await send(client, records[:200], "batch-1")
    await send(client, records[200:], "batch-2")
    request = http_request("GET", "/api/admin/v1/feedback?format=jsonl", admin_headers())
    with capture_logs() as logs:
        head = await leave_after_the_status_line(client, request, logs)
    assert head.startswith(b"HTTP/1.1 200 ")
    await assert_left_midway(client, logs, "lightspeed_ingest", "/api/admin/v1/feedback")
