"""POST /v1/feedback and /v1/feedback/status: rules, exact bodies, the file written."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import resource
import uuid
from pathlib import Path
from typing import Any

import pytest

from lightspeed.api.state import SERVER
from lightspeed_common.config import AppConfig
from tests.conftest import ClientFactory
from tests.support import fill_up, json_files, open_descriptors, transcripts_written
from tests.telemetry_support import stored_settings

FEEDBACK_KEYS = {
    "user_id",
    "timestamp",
    "conversation_id",
    "user_question",
    "llm_response",
    "sentiment",
    "user_feedback",
    "categories",
}


async def start_conversation(client: Any, user: str = "alice") -> str:
    resp = await client.post(f"/v1/query?user_id={user}", json={"query": "How do I start the server?"})
    assert resp.status == 200
    conversation_id: str = (await resp.json())["conversation_id"]
    return conversation_id


def feedback_body(conversation_id: str, **fields: Any) -> dict[str, Any]:
    return {"conversation_id": conversation_id, "user_question": "q?", "llm_response": "a.", **fields}


async def test_feedback_writes_one_file_in_the_documented_format(client: Any, config: AppConfig) -> None:
    """Accepted feedback is one <uuid>.json with lightspeed-stack's keys and the keyed user hash."""
    conversation_id = await start_conversation(client)
    resp = await client.post(
        "/v1/feedback?user_id=alice",
        json=feedback_body(
            conversation_id,
            user_question="Why can carol@example.org not log in?",
            sentiment=-1,
            user_feedback="Wrong, see 192.168.7.7",
            categories=["incorrect", "incomplete", "incorrect"],
        ),
    )
    assert resp.status == 200
    assert await resp.json() == {"response": "feedback received"}
    storage = config.user_data_collection.feedback_storage
    assert storage is not None
    files = json_files(storage)
    assert len(files) == 1
    assert files[0].parent == storage
    uuid.UUID(files[0].stem)
    record = json.loads(files[0].read_text())
    assert set(record) == FEEDBACK_KEYS
    transcript_dir = json_files(config.user_data_collection.transcripts_storage)[0].parent
    assert record["user_id"] == transcript_dir.parent.name  # the same hash in both record kinds
    assert record["conversation_id"] == conversation_id
    assert record["sentiment"] == -1
    assert record["categories"] == ["incorrect", "incomplete"]
    assert record["user_question"] == "Why can [REDACTED_EMAIL] not log in?"
    assert record["user_feedback"] == "Wrong, see [REDACTED_IP]"
    assert record["llm_response"] == "a."
    assert "+00:00" in record["timestamp"]
    assert "alice" not in files[0].read_text()


INVALID = [
    (
        {"sentiment": 0},
        ["body", "sentiment"],
        "value_error",
        "Value error, Improper sentiment value of 0, needs to be -1 or 1",
    ),
    ({"sentiment": 2}, ["body", "sentiment"], "value_error", None),
    ({"sentiment": 1.5}, ["body", "sentiment"], "int_from_float", None),
    ({"sentiment": "one"}, ["body", "sentiment"], "int_parsing", None),
    ({"user_feedback": "x" * 4097}, ["body", "user_feedback"], "string_too_long", None),
    ({"categories": ["rude"]}, ["body", "categories", 0], "enum", None),
    ({"sentiment": 1, "rating": 5}, ["body", "rating"], "extra_forbidden", None),
    (
        {"user_feedback": ""},
        ["body"],
        "value_error",
        "Value error, At least one form of feedback must be provided: 'sentiment', 'user_feedback', or 'categories'",
    ),
    ({"categories": []}, ["body"], "value_error", None),
    ({}, ["body"], "value_error", None),
]


@pytest.mark.parametrize(("extra", "loc", "kind", "msg"), INVALID)
async def test_invalid_feedback_is_422_and_writes_nothing(
    client: Any, config: AppConfig, extra: dict[str, Any], loc: list[Any], kind: str, msg: str | None
) -> None:
    """Every feedback rule answers 422 naming the field, and no file is written."""
    conversation_id = await start_conversation(client)
    resp = await client.post("/v1/feedback?user_id=alice", json=feedback_body(conversation_id, **extra))
    assert resp.status == 422
    detail = (await resp.json())["detail"]
    match = [e for e in detail if e["loc"] == loc and e["type"] == kind]
    assert match, detail
    if msg is not None:
        assert match[0]["msg"] == msg
    assert json_files(config.user_data_collection.feedback_storage) == []


@pytest.mark.parametrize(
    ("extra", "sentiment"),
    [({"sentiment": "1"}, 1), ({"sentiment": 1.0}, 1), ({"sentiment": -1}, -1), ({"user_feedback": "   "}, None)],
)
async def test_feedback_is_read_as_lightspeed_stack_reads_it(
    client: Any, config: AppConfig, extra: dict[str, Any], sentiment: int | None
) -> None:
    """Its lax integers for sentiment, and any user_feedback but "" counting as feedback."""
    conversation_id = await start_conversation(client)
    resp = await client.post("/v1/feedback?user_id=alice", json=feedback_body(conversation_id, **extra))
    assert resp.status == 200, await resp.text()
    [record] = [json.loads(p.read_text()) for p in json_files(config.user_data_collection.feedback_storage)]
    assert record["sentiment"] == sentiment


@pytest.mark.parametrize("missing", ["conversation_id", "user_question", "llm_response"])
async def test_required_feedback_fields(client: Any, missing: str) -> None:
    """conversation_id, user_question and llm_response are required."""
    conversation_id = await start_conversation(client)
    body = feedback_body(conversation_id, sentiment=1)
    del body[missing]
    resp = await client.post("/v1/feedback?user_id=alice", json=body)
    assert resp.status == 422
    assert {"type": "missing", "loc": ["body", missing], "msg": "Field required", "input": body} in (await resp.json())[
        "detail"
    ]


async def test_feedback_accepts_each_single_form(client: Any, config: AppConfig) -> None:
    """Sentiment alone, text alone, or categories alone is enough."""
    conversation_id = await start_conversation(client)
    for extra in ({"sentiment": 1}, {"user_feedback": "good"}, {"categories": ["other"]}):
        resp = await client.post("/v1/feedback?user_id=alice", json=feedback_body(conversation_id, **extra))
        assert resp.status == 200, await resp.text()
    assert len(json_files(config.user_data_collection.feedback_storage)) == 3


async def test_feedback_needs_a_conversation_of_the_callers(client: Any, config: AppConfig) -> None:
    """Feedback on an unknown conversation is 404, on someone else's 403; nothing is written."""
    conversation_id = await start_conversation(client, "alice")
    other = await client.post("/v1/feedback?user_id=bob", json=feedback_body(conversation_id, sentiment=1))
    assert other.status == 403
    unknown = await client.post("/v1/feedback?user_id=alice", json=feedback_body(str(uuid.uuid4()), sentiment=1))
    assert unknown.status == 404
    assert (await unknown.json())["detail"]["response"] == "Conversation not found"
    assert json_files(config.user_data_collection.feedback_storage) == []


async def test_disabled_feedback_is_403_and_writes_nothing(make_client: ClientFactory, make_config: Any) -> None:
    """feedback_enabled false answers 403 with lightspeed-stack's body."""
    config = make_config(user_data_collection={"feedback_enabled": False})
    client = await make_client(config)
    conversation_id = await start_conversation(client)
    resp = await client.post("/v1/feedback?user_id=alice", json=feedback_body(conversation_id, sentiment=1))
    assert resp.status == 403
    assert await resp.json() == {
        "detail": {"response": "Storing feedback is disabled", "cause": "Storing feedback is disabled."},
    }
    assert json_files(config.user_data_collection.feedback_storage) == []


async def test_feedback_status_toggle_persists_across_restarts(make_client: ClientFactory, config: AppConfig) -> None:
    """PUT /v1/feedback/status changes the setting, GET shows it, and a restarted server keeps it."""
    client = await make_client(config)
    assert await (await client.get("/v1/feedback/status")).json() == {
        "functionality": "feedback",
        "status": {"enabled": True},
    }
    resp = await client.put("/v1/feedback/status?user_id=admin1", json={"status": False})
    assert resp.status == 200
    change = (await resp.json())["status"]
    assert set(change) == {"previous_status", "updated_status", "updated_by", "timestamp"}
    assert change["previous_status"] is True
    assert change["updated_status"] is False
    assert change["updated_by"] == "admin1"
    await client.close()
    restarted = await make_client(config)
    assert (await (await restarted.get("/v1/feedback/status")).json())["status"] == {"enabled": False}
    conversation_id = await start_conversation(restarted)
    blocked = await restarted.post("/v1/feedback?user_id=alice", json=feedback_body(conversation_id, sentiment=1))
    assert blocked.status == 403
    settings = stored_settings(config.service.state_dir)
    assert settings["feedback_enabled"] is False
    assert "admin1" not in json.dumps(settings)  # who changed it is kept as a hash
    # Item 23.18: the installation's keyed hash (the records' user hash), not a plain SHA-256 anyone can recompute.
    assert settings["feedback_updated_by"] == restarted.app[SERVER].hasher("admin1")
    assert settings["feedback_updated_by"] != hashlib.sha256(b"admin1").hexdigest()


@pytest.mark.parametrize("body", [{"status": "maybe"}, {"status": 2}, {"status": None}, {"status": True, "x": 1}])
async def test_feedback_status_that_is_no_bool_is_422(client: Any, body: dict[str, Any]) -> None:
    """status is read as lightspeed-stack reads it (pydantic's lax bool), so what no bool reading takes is a 422."""
    resp = await client.put("/v1/feedback/status", json=body)
    assert resp.status == 422
    assert (await resp.json())["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize(("body", "enabled"), [({"status": "false"}, False), ({"status": 1}, True), ({}, False)])
async def test_feedback_status_reads_what_lightspeed_stack_reads(
    client: Any, body: dict[str, Any], enabled: bool
) -> None:
    """lightspeed-stack's FeedbackStatusUpdateRequest: a lax bool, false when absent."""
    resp = await client.put("/v1/feedback/status", json=body)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"]["updated_status"] is enabled


async def test_feedback_storage_failure_is_500_and_leaves_no_partial_file(
    make_client: ClientFactory, make_config: Any, small_tmpfs: Any
) -> None:
    """On a full disk feedback is a 500 with the documented body and no *.json or temp file remains."""
    disk = small_tmpfs("disk", "size=256k")
    config = make_config(user_data_collection={"feedback_storage": str(disk / "feedback")})
    client = await make_client(config)
    conversation_id = await start_conversation(client)
    fill_up(disk)
    resp = await client.post(
        "/v1/feedback?user_id=alice",
        json=feedback_body(conversation_id, sentiment=1, llm_response="y" * 20000),
    )
    assert resp.status == 500
    body = await resp.json()
    assert body["detail"]["response"] == "Failed to store feedback"
    assert "No space left on device" in body["detail"]["cause"]
    assert list((disk / "feedback").iterdir()) == []
    metrics = await (await client.get("/metrics")).text()
    assert 'lightspeed_records_failed_total{kind="feedback"} 1.0' in metrics


async def test_feedback_the_writer_has_no_descriptor_for_is_503_with_retry_after(
    make_client: ClientFactory, config: AppConfig
) -> None:
    """The record writer process out of file descriptors (its limit lowered to what it holds): the feedback is
    503 with Retry-After, to be sent again, not the 500 of a storage failure; with the limit back, it is stored."""
    client = await make_client(config)
    conversation_id = await start_conversation(client)
    body = feedback_body(conversation_id, sentiment=1)
    assert (await client.post("/v1/feedback?user_id=alice", json=body)).status == 200  # the writer is running
    proc = client.app[SERVER].feedback._writer._process._proc
    assert proc is not None
    limits = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
    held = await asyncio.to_thread(open_descriptors, proc.pid)
    resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (held, limits[1]))
    try:
        refused = await client.post("/v1/feedback?user_id=alice", json=body)
    finally:
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, limits)
    assert refused.status == 503, await refused.text()
    assert refused.headers["Retry-After"] == "5"
    assert "no file descriptors left" in (await refused.json())["detail"]["cause"]
    assert (await client.post("/v1/feedback?user_id=alice", json=body)).status == 200
    assert len(json_files(config.user_data_collection.feedback_storage)) == 2


async def test_transcript_failure_does_not_fail_the_answer(
    make_client: ClientFactory, make_config: Any, small_tmpfs: Any, tmp_path: Path
) -> None:
    """A full transcripts disk still returns the answer; the failure is counted."""
    disk = small_tmpfs("tdisk", "size=256k")
    config = make_config(user_data_collection={"transcripts_storage": str(disk / "transcripts")})
    client = await make_client(config)
    fill_up(disk)
    resp = await client.post("/v1/query", json={"query": "How do I start the server?"})
    assert resp.status == 200
    assert "make run" in (await resp.json())["response"]
    await transcripts_written(client)
    assert json_files(disk / "transcripts") == []
    metrics = await (await client.get("/metrics")).text()
    assert 'lightspeed_records_failed_total{kind="transcript"} 1.0' in metrics


async def test_records_carry_the_installations_keyed_hash_of_the_user(
    make_client: ClientFactory, make_config: Any, tmp_path: Path
) -> None:
    """Both record kinds store HMAC-SHA256(installation key, user id): not the plain SHA-256, and another
    installation (another key) stores another hash for the same user."""
    stored = []
    for name in ("first", "second"):
        config = make_config(
            service={"state_dir": str(tmp_path / name / "state")},
            user_data_collection={
                "feedback_storage": str(tmp_path / name / "feedback"),
                "transcripts_storage": str(tmp_path / name / "transcripts"),
            },
        )
        client = await make_client(config)
        conversation_id = await start_conversation(client, "alice")
        resp = await client.post("/v1/feedback?user_id=alice", json=feedback_body(conversation_id, sentiment=1))
        assert resp.status == 200
        key = (config.service.state_dir / "user-hash.key").read_bytes()
        expected = hmac.new(key, b"alice", hashlib.sha256).hexdigest()
        udc = config.user_data_collection
        feedback = json.loads(json_files(udc.feedback_storage)[0].read_text())
        transcript_file = json_files(udc.transcripts_storage)[0]
        transcript = json.loads(transcript_file.read_text())
        assert feedback["user_id"] == expected
        assert transcript["metadata"]["user_id"] == expected
        assert transcript_file.parent.parent.name == expected
        stored.append(expected)
    assert stored[0] != stored[1]
    assert hashlib.sha256(b"alice").hexdigest() not in stored
