"""The insights (issue 27), on SQLite and on PostgreSQL: the per-day counts kept on insert give the numbers of
the records sent, an erasure and retention take theirs away, a rebuild from the index finds the same counts,
the range and the period choose what is summed, and each chart is an SVG that runs and fetches nothing."""

from __future__ import annotations

import json
import socket
import sqlite3
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.app import create_app as create_ingest_app
from ingest.app import enforce_retention
from ingest.context import INGEST
from ingest.erasure import apply_pending
from ingest.sqlite_storage import SQLITE_MIGRATIONS
from ingest.storage import DailyLimits, FeedbackInfo, RecordInfo, Rewrite, Storage, UploadInfo
from lightspeed_common.sqlite import open_database
from lightspeed_common.telemetry_schema import ModelRegistrationEvent
from tests.ingest_support import (
    Client,
    IngestFactory,
    admin_get,
    admin_headers,
    ingest_config,
    member,
    tar_gz,
    upload,
)
from tests.telemetry_support import event

ALICE, BOB = "a1" * 32, "b2" * 32
CLIENT_1, CLIENT_2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
RANGE = "since=2026-11-16&until=2026-11-22"


def transcript(conversation: str, turn: int, day: str, model: str = "gpt-4o", user: str = BOB) -> dict[str, Any]:
    return {
        "metadata": {
            "provider": "openai",
            "model": model,
            "user_id": user,
            "conversation_id": conversation,
            "timestamp": f"{day}T10:{turn:02d}:00+00:00",
        },
        "redacted_query": f"question {turn}",
        "llm_response": f"answer {turn}",
    }


def feedback(n: int, day: str, sentiment: int, conversation: str, **more: Any) -> dict[str, Any]:
    return {
        "user_id": more.pop("user", BOB),
        "timestamp": f"{day} 11:{n:02d}:00+00:00",
        "conversation_id": conversation,
        "user_question": "q",
        "llm_response": "a",
        "sentiment": sentiment,
        "user_feedback": f"feedback {n}",
        "categories": more.pop("categories", None),
    }


async def send(client: Client, records: list[dict[str, Any]], batch: str) -> None:
    entries = []
    for n, record in enumerate(records):
        data = json.dumps(record).encode()
        folder = "transcripts" if "metadata" in record else "feedback"
        entries.append((member(f"{folder}/{batch}-{n}.json", data), data))
    resp = await upload(client, tar_gz(entries), batch)
    assert resp.status == 202, await resp.text()


async def a_week(client: Client) -> None:
    """Conversation c-1: 3 turns on 2026-11-20 (openai/gpt-4o), with 7 positive and 3 negative feedback that
    day; c-2 (alice's): one turn on 2026-11-21 (openai/granite), one negative feedback; one positive feedback
    of a conversation the ingest has no transcript of, on 2026-11-22."""
    await send(client, [transcript("c-1", turn, "2026-11-20") for turn in range(3)], "batch-1")
    records = [feedback(n, "2026-11-20", 1, "c-1") for n in range(7)]
    records += [feedback(n, "2026-11-20", -1, "c-1", categories=["incorrect"]) for n in range(7, 9)]
    records += [feedback(9, "2026-11-20", -1, "c-1", categories=["incorrect", "incomplete"])]
    records += [transcript("c-2", 0, "2026-11-21", model="granite", user=ALICE)]
    records += [feedback(10, "2026-11-21", -1, "c-2", categories=["unsafe"], user=ALICE)]
    records += [feedback(11, "2026-11-22", 1, "c-elsewhere")]
    await send(client, records, "batch-2")


def chart(body: dict[str, Any], chart_id: str) -> dict[str, Any]:
    return next(c for c in body["charts"] if c["id"] == chart_id)


def rows(body: dict[str, Any], chart_id: str) -> dict[str, list[Any]]:
    return {row[0]: row[1:] for row in chart(body, chart_id)["table"]["rows"]}


async def test_the_charts_count_the_records_sent(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    await a_week(client)
    body = await admin_get(client, f"/api/admin/v1/insights?{RANGE}")
    assert (body["since"], body["until"], body["by"]) == ("2026-11-16", "2026-11-22", "day")
    assert chart(body, "feedback")["table"]["columns"] == ["Day", "positive", "negative", "Positive share"]
    feedback_rows = rows(body, "feedback")
    assert feedback_rows["2026-11-20"] == [7, 3, "70%"]
    assert feedback_rows["2026-11-21"] == [0, 1, "0%"]
    assert feedback_rows["2026-11-22"] == [1, 0, "100%"]
    assert feedback_rows["2026-11-19"] == [0, 0, "-"]
    assert chart(body, "feedback")["summary"] == "Feedback: 8 positive, 4 negative (67% positive)."
    assert rows(body, "categories") == {"incorrect": [3], "incomplete": [1], "unsafe": [1]}
    assert rows(body, "models") == {
        "openai/gpt-4o": [7, 3, "70%"],
        "openai/granite": [0, 1, "0%"],
        "unknown (no transcript)": [1, 0, "100%"],
    }
    assert rows(body, "conversations")["2026-11-20"] == [1]
    assert rows(body, "conversations")["2026-11-21"] == [1]
    assert {turns: n for turns, (n,) in rows(body, "turns").items() if n} == {"1": 1, "3": 1}

    today = datetime.now(UTC).date().isoformat()
    received = await admin_get(client, f"/api/admin/v1/insights?since={today}&until={today}")
    assert rows(received, "received")[today] == [4, 12]  # transcripts, feedback: by the day they arrived
    assert rows(received, "uploads")[today] == [2, 0]


async def test_the_range_and_the_period_choose_what_is_summed(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    await a_week(client)
    one_day = await admin_get(client, "/api/admin/v1/insights?since=2026-11-21&until=2026-11-21")
    assert rows(one_day, "feedback") == {"2026-11-21": [0, 1, "0%"]}
    assert rows(one_day, "models") == {"openai/granite": [0, 1, "0%"]}
    assert rows(one_day, "categories") == {"unsafe": [1]}
    weeks = await admin_get(client, "/api/admin/v1/insights?since=2026-11-10&until=2026-11-25&by=week")
    assert chart(weeks, "feedback")["table"]["columns"][0] == "Week of"
    assert rows(weeks, "feedback") == {  # Mondays; the week of the 16th holds all of it
        "2026-11-09": [0, 0, "-"],
        "2026-11-16": [8, 4, "67%"],
        "2026-11-23": [0, 0, "-"],
    }
    long = await admin_get(client, "/api/admin/v1/insights?since=2026-01-01&until=2026-11-30")
    assert long["by"] == "week"  # more than 92 days: weeks unless asked


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("since=2026-13-01", 400, "since must be a day, YYYY-MM-DD"),
        ("since=2026-11-20&until=2026-11-19", 400, "since (2026-11-20) is after until (2026-11-19)"),
        ("since=2020-01-01&until=2026-11-19", 400, "a range covers at most 731 days"),
        ("by=month", 400, "by must be day or week"),
    ],
)
async def test_a_wrong_range_is_refused_with_the_reason(
    make_ingest: IngestFactory, query: str, status: int, says: str
) -> None:
    client = await make_ingest()
    for path in ("/api/admin/v1/insights", "/api/admin/v1/insights/feedback.svg"):
        resp = await client.get(f"{path}?{query}", headers=admin_headers())
        assert resp.status == status
        assert (await resp.json())["detail"]["cause"] == says


async def test_each_chart_is_an_svg_with_its_numbers_that_runs_and_fetches_nothing(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    await a_week(client)
    body = await admin_get(client, f"/api/admin/v1/insights?{RANGE}")
    for entry in body["charts"]:
        resp = await client.get(f"/api/admin/v1/insights/{entry['id']}.svg?{RANGE}", headers=admin_headers())
        assert resp.status == 200
        assert resp.content_type == "image/svg+xml"
        assert resp.headers["Content-Security-Policy"] == "default-src 'none'"
        svg = await resp.text()
        root = ET.fromstring(svg)  # noqa: S314 - well-formed (the ingest under test wrote it)
        assert root.get("role") == "img"
        assert root.find("{http://www.w3.org/2000/svg}desc").text == entry["summary"]  # type: ignore[union-attr]
        assert "<script" not in svg
        assert "href" not in svg
    feedback_svg = await (
        await client.get(f"/api/admin/v1/insights/feedback.svg?{RANGE}", headers=admin_headers())
    ).text()
    assert "<title>2026-11-20: positive 7</title>" in feedback_svg
    assert "<title>2026-11-20: negative 3</title>" in feedback_svg
    resp = await client.get("/api/admin/v1/insights/nothing.svg", headers=admin_headers())
    assert resp.status == 404
    assert "charts: received, uploads, feedback" in (await resp.json())["detail"]["cause"]
    assert (await client.get(f"/api/admin/v1/insights/feedback.svg?{RANGE}")).status == 401


async def test_a_label_from_a_record_is_text_in_the_svg_not_markup(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    await send(client, [transcript("c-x", 0, "2026-11-20", model="<script>alert(1)</script>")], "x-1")
    await send(client, [feedback(0, "2026-11-20", 1, "c-x")], "x-2")
    svg = await (await client.get(f"/api/admin/v1/insights/models.svg?{RANGE}", headers=admin_headers())).text()
    assert "<script>" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    ET.fromstring(svg)  # noqa: S314 - still well-formed


async def test_refused_uploads_are_counted_and_listed_with_the_reason(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    resp = await upload(client, b"not a tar.gz at all", "broken-batch")
    assert resp.status == 400
    today = datetime.now(UTC).date().isoformat()
    body = await admin_get(client, f"/api/admin/v1/insights?since={today}&until={today}")
    assert rows(body, "uploads")[today] == [0, 1]
    [refusal] = body["refusals"]
    assert (refusal["request_id"], refusal["outcome"]) == ("broken-batch", "rejected")
    assert refusal["reason"].startswith("not a readable tar.gz archive")
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    assert (await admin_get(client, f"/api/admin/v1/insights?since={yesterday}&until={yesterday}"))["refusals"] == []


async def test_an_erasure_and_retention_take_their_records_out_of_the_charts(make_ingest: IngestFactory) -> None:
    client = await make_ingest()
    await a_week(client)
    resp = await client.post("/api/admin/v1/erasures", json={"user_hash": ALICE}, headers=admin_headers())
    assert resp.status == 200
    await apply_pending(client.app[INGEST])
    body = await admin_get(client, f"/api/admin/v1/insights?{RANGE}")
    assert rows(body, "feedback")["2026-11-21"] == [0, 0, "-"]
    assert "openai/granite" not in rows(body, "models")
    assert rows(body, "conversations")["2026-11-21"] == [0]
    assert rows(body, "categories") == {"incorrect": [3], "incomplete": [1]}
    ingest = client.app[INGEST]
    await enforce_retention(ingest, datetime.now(UTC) + timedelta(days=ingest.config.archive_retention_days + 1))
    emptied = await admin_get(client, f"/api/admin/v1/insights?{RANGE}")
    numbers = [v for entry in emptied["charts"] for row in entry["table"]["rows"] for v in row if isinstance(v, int)]
    assert numbers
    assert set(numbers) == {0}


# -- the counts equal a rebuild from the index, whatever happened (storage, both backends) ----------------------


def _upload(request_id: str, when: datetime) -> UploadInfo:
    return UploadInfo(request_id, when, "lightspeed", "periodic", f"{request_id}.tar.gz", 10, "0" * 64)


def _transcript(n: int, conversation: str, day: str, model: str | None = "p/m") -> RecordInfo:
    return RecordInfo(
        f"t/{n}", "transcripts", f"{n:064x}", conversation, f"{day}T10:{n % 60:02d}:00Z", BOB, None, model
    )


def _feedback(
    n: int, conversation: str, day: str, sentiment: int | None, categories: tuple[str, ...] = ()
) -> RecordInfo:
    info = FeedbackInfo(f"{day}T11:00:00Z", sentiment, categories, "text", "{}")
    return RecordInfo(f"f/{n}", "feedback", f"{n:064x}", conversation, f"{day} 11:00:00", BOB, info)


def _event(model: str, client_id: str, day: str) -> ModelRegistrationEvent:
    return ModelRegistrationEvent.model_validate(
        event(datetime.fromisoformat(f"{day}T08:00:00+00:00"), model, client_id)
    )


def _kept_equals_rebuilt(storage: Storage) -> dict[tuple[str, str, str], int]:
    kept = storage.all_daily_counts()  # type: ignore[attr-defined]
    assert storage.rebuild_insights() is True
    assert storage.all_daily_counts() == kept  # type: ignore[attr-defined]
    return kept


def test_the_counts_kept_on_the_way_equal_a_rebuild_from_the_index(storage: Storage) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=40)
    first = [_transcript(i, "c-1", "2026-10-20") for i in range(4)]
    first += [_feedback(100 + i, "c-1", "2026-10-20", 1 if i < 5 else -1, ("incorrect",) * (i >= 5)) for i in range(8)]
    storage.add_upload(_upload("old", old), first, lambda: None)
    second = [_transcript(4, "c-1", "2026-10-19"), _transcript(5, "c-2", "2026-11-20", None)]  # c-1 started earlier
    second += [first[0], _feedback(200, "c-2", "2026-11-20", None), _feedback(201, "", "", -1)]  # a re-sent one
    second += [  # no timestamp, one that is not a time: counted on the day the upload arrived
        RecordInfo("t/9", "transcripts", f"{9:064x}", "c-3", None, BOB),
        RecordInfo("t/10", "transcripts", f"{10:064x}", "c-3", "00:00 today", BOB),
    ]
    storage.add_upload(_upload("new", now), second, lambda: None)
    storage.add_events(
        [_event("m-a", CLIENT_1, "2026-11-20"), _event("m-b", CLIENT_2, "2026-11-20")], DailyLimits(100, 100)
    )
    storage.add_refusal(now.isoformat(), "refused-1", "rejected", 10, "not a readable tar.gz archive")
    kept = _kept_equals_rebuilt(storage)
    assert kept["conversations", "2026-10-19", ""] == 1  # moved to the day of its earliest transcript
    assert ("conversations", "2026-10-20", "") not in kept
    assert kept["turns", "2026-10-19", "5"] == 1
    assert kept["model_positive", "2026-10-20", "p/m"] == 5
    assert kept["model_none", "2026-11-20", ""] == 1  # c-2's transcript names no model
    assert kept["records", old.date().isoformat(), "transcripts"] == 4
    assert kept["telemetry", "2026-11-20", "m-a"] == 1
    assert kept["turns", now.date().isoformat(), "2"] == 1  # c-3

    kept_hashes = [
        r.content_sha256 for r in first if r.content_sha256 not in {first[1].content_sha256, first[9].content_sha256}
    ]
    storage.erasure_rewritten([("old", Rewrite(2, kept_hashes))])  # one transcript, one negative feedback
    kept = _kept_equals_rebuilt(storage)
    assert kept["turns", "2026-10-19", "4"] == 1
    assert kept["feedback", "2026-10-20", "negative"] == 2

    storage.delete_client(CLIENT_1, "admin", now)
    kept = _kept_equals_rebuilt(storage)
    assert ("telemetry", "2026-11-20", "m-a") not in kept

    storage.erasure_rewritten([("new", Rewrite(7, []))])  # the whole upload
    kept = _kept_equals_rebuilt(storage)
    assert kept["turns", "2026-10-20", "3"] == 1  # c-1 lost its earliest turn: it starts a day later again
    assert not any(key[0] == "uploads" and key[1] == now.date().isoformat() for key in kept)

    storage.enforce_retention(now - timedelta(days=1), now + timedelta(days=400), now - timedelta(days=1))
    kept = _kept_equals_rebuilt(storage)
    assert kept == {("refused", now.date().isoformat(), "rejected"): 1}
    storage.close()


async def test_a_database_from_before_the_insights_is_counted_once_at_its_first_start(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # what the start tells systemd
    systemd.bind(str(tmp_path / "notify"))
    systemd.setblocking(False)
    request.addfinalizer(systemd.close)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    state = tmp_path / "ingest"
    state.mkdir()
    path = state / "ingest.sqlite3"
    open_database(path, SQLITE_MIGRATIONS[:3], "FULL").close()  # schema version 3, as the release before wrote it
    received = datetime.now(UTC) - timedelta(days=1)
    day, arrived = (received - timedelta(days=1)).date().isoformat(), received.date().isoformat()
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO uploads (request_id, received_at, service, category, archive, bytes, sha256, records, "
            "new_records, duplicate_records) VALUES ('r', ?, 's', 'c', 'a', 1, 'x', 3, 3, 0)",
            (received.isoformat(),),
        )
        db.executemany(
            "INSERT INTO records VALUES (?, 'r', ?, ?, 'c-1', ?)",
            [
                (f"{n}" * 64, f"m/{n}", kind, f"{day}T10:00:00Z")
                for n, kind in ((1, "transcripts"), (2, "transcripts"), (3, "feedback"))
            ],
        )
        db.execute(
            "INSERT INTO feedback VALUES (?, 'r', ?, ?, -1, ?, 't', '{}')",
            ("3" * 64, f"{day}T10:00:00Z", day, '["outdated"]'),
        )
    query = f"/api/admin/v1/insights?since={day}&until={arrived}"
    client = await aiohttp_client(create_ingest_app(ingest_config(state, database={})))
    body = await admin_get(client, query)  # counted at its start
    assert b"EXTEND_TIMEOUT_USEC=30000000" in systemd.recv(4096)  # systemd waits for a long count
    assert rows(body, "feedback")[day] == [0, 1, "0%"]
    assert rows(body, "categories") == {"outdated": [1]}
    assert rows(body, "models") == {"unknown (no transcript)": [0, 1, "0%"]}  # its model was not indexed then
    assert rows(body, "turns")["2"] == [1]
    assert rows(body, "received")[arrived] == [2, 1]
    await send(client, [feedback(0, day, 1, "c-9")], "later")
    await client.close()
    client = await aiohttp_client(create_ingest_app(ingest_config(state, database={})))  # not counted again
    assert rows(await admin_get(client, query), "feedback")[day] == [1, 1, "50%"]
    assert client.app[INGEST].db.storage.rebuild_insights(only_if_unbuilt=True) is False


def test_days_are_summed_into_mondays_weeks() -> None:
    from ingest.insights import Range

    span = Range(date(2026, 11, 18), date(2026, 12, 2), "week")
    assert span.periods() == [date(2026, 11, 16), date(2026, 11, 23), date(2026, 11, 30)]
