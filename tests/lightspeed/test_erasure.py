"""Erasing one user's data on the server's side: the store, the records not yet claimed, the note the
collector reads; idempotent, and finished at the next start when a stop interrupted it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from structlog.testing import capture_logs

from lightspeed.cli import EXIT_USAGE
from lightspeed.identity import UserHasher
from lightspeed.privacy.audit import AUDIT_MESSAGE_ID
from lightspeed.privacy.erasure import write_note
from lightspeed_common.config import AppConfig
from lightspeed_common.records import erasure_notes_dir
from tests.conftest import ClientFactory, ConfigFactory
from tests.fake_llm import free_port
from tests.lightspeed.test_conversations import KEYS, as_user
from tests.lightspeed.test_settings_cli import lightspeed
from tests.processes import call, process_config, start, wait_ready
from tests.support import asked_while_a_transcript_is_written, json_files, transcripts_written


def api_key_config(make_config: ConfigFactory, tmp_path: Path) -> AppConfig:
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump(KEYS))
    return make_config(authentication={"module": "api-key", "api_key": {"keys_file": str(keys)}})


async def api_key_client(make_client: ClientFactory, config: AppConfig) -> tuple[Any, UserHasher]:
    """A client of the app for `config`, and the installation's user hasher."""
    return await make_client(config), UserHasher.from_state_dir(config.service.state_dir)


async def use(client: Any, user: str, questions: int) -> list[str]:
    """`questions` questions in one conversation and another, and one feedback; the conversation ids."""
    conversations: list[str] = []
    for n in range(questions):
        body: dict[str, Any] = {"query": f"How do I start the server? ({n})"}
        if n and n < questions - 1:
            body["conversation_id"] = conversations[0]
        resp = await client.post("/v1/query", json=body, headers=as_user(user))
        assert resp.status == 200, await resp.text()
        conversations.append((await resp.json())["conversation_id"])
    feedback = {
        "conversation_id": conversations[0],
        "user_question": "How do I start the server?",
        "llm_response": "make run",
        "sentiment": 1,
    }
    assert (await client.post("/v1/feedback", json=feedback, headers=as_user(user))).status == 200
    await transcripts_written(client)
    return sorted(set(conversations))


def files_holding(config: AppConfig, user_hash: str) -> list[Path]:
    data = config.user_data_collection
    roots = [data.feedback_storage, data.transcripts_storage]
    return [
        p for root in roots if root for p in root.rglob("*.json") if user_hash in p.read_text() or user_hash in str(p)
    ]


async def test_a_user_erases_their_data_and_only_theirs(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    config = api_key_config(make_config, tmp_path)
    client, hasher = await api_key_client(make_client, config)
    alices = await use(client, "alice", 3)
    bobs = await use(client, "bob", 2)
    alice, bob = hasher("alice"), hasher("bob")
    assert len(files_holding(config, alice)) == 4  # three transcripts, one feedback
    bob_files = files_holding(config, bob)
    resp = await client.delete("/v1/users/me/data", headers=as_user("alice"))
    assert await resp.json() == {
        "user_id": "alice",
        "erased": {"conversations": 2, "turns": 3, "transcripts": 3, "feedback": 1},
        "collector_notified": True,
    }
    assert files_holding(config, alice) == []
    assert files_holding(config, bob) == bob_files
    assert (await (await client.get("/v1/conversations", headers=as_user("alice"))).json())["conversations"] == []
    listed = (await (await client.get("/v1/conversations", headers=as_user("bob"))).json())["conversations"]
    assert sorted(c["conversation_id"] for c in listed) == bobs
    # Gone from the store's files too, not only from its answers (overwritten, the write-ahead log emptied).
    stored = b"".join(p.read_bytes() for p in config.service.state_dir.glob("conversations.sqlite3*"))
    assert all(c.encode() not in stored for c in alices)
    assert all(c.encode() in stored for c in bobs)
    note = json.loads((erasure_notes_dir(config) / f"{alice}.json").read_text())
    assert note["server_done"] is True
    assert note["erased"] == {"conversations": 2, "turns": 3, "transcripts": 3, "feedback": 1}
    # Again: nothing left, nothing else touched.
    again = await (await client.delete("/v1/users/me/data", headers=as_user("alice"))).json()
    assert again["erased"] == {"conversations": 0, "turns": 0, "transcripts": 0, "feedback": 0}
    assert files_holding(config, bob) == bob_files


async def test_a_transcript_landing_after_its_users_erasure_began_is_removed(
    make_client: ClientFactory, config: AppConfig
) -> None:
    """An answer's transcript is written after the answer, and a sibling worker's erasure cannot wait for it:
    one that lands while the user's note covers it (the erasure running, or done after the question) is
    removed at once; a question after a finished erasure (the user came back) keeps its transcript."""
    client = await make_client(config)
    alice = UserHasher.from_state_dir(config.service.state_dir)("alice")
    note = erasure_notes_dir(config) / f"{alice}.json"
    storage = config.user_data_collection.transcripts_storage
    assert storage is not None
    write_note(note, {"user_hash": alice, "requested_at": "x", "server_done": False})  # a sibling's, running
    assert (await client.post("/v1/query?user_id=alice", json={"query": "start the server"})).status == 200
    await transcripts_written(client)
    assert json_files(storage) == []
    erased_at = datetime.now(UTC).isoformat()
    write_note(note, {"user_hash": alice, "requested_at": "x", "server_done": True, "erased_at": erased_at})
    assert (await client.post("/v1/query?user_id=alice", json={"query": "start the server"})).status == 200
    await transcripts_written(client)
    assert len(json_files(storage)) == 1
    note.write_text("{not json")  # unreadable: the collector drops every record of the user, and so does this
    assert (await client.post("/v1/query?user_id=alice", json={"query": "start the server"})).status == 200
    await transcripts_written(client)
    assert len(json_files(storage)) == 1


async def test_an_erasure_asked_right_after_an_answer_erases_its_transcript(
    make_client: ClientFactory, config: AppConfig
) -> None:
    """The transcript is written after its answer is sent; an erasure asked meanwhile waits for it, so it
    is among the erased (counted, and gone), not left behind."""
    client = await make_client(config)
    response = await asked_while_a_transcript_is_written(client, "DELETE", "/v1/users/me/data")
    erased = await response.json()
    assert erased["erased"]["transcripts"] == 1
    assert files_holding(config, UserHasher.from_state_dir(config.service.state_dir)("alice")) == []


async def test_only_an_admin_erases_another_user(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    config = api_key_config(make_config, tmp_path)
    client, hasher = await api_key_client(make_client, config)
    await use(client, "bob", 1)
    refused = await client.delete("/v1/users/bob/data", headers=as_user("alice"))
    assert refused.status == 403
    assert files_holding(config, hasher("bob"))
    resp = await client.delete("/v1/users/bob/data", headers=as_user("admin"))
    assert (await resp.json())["erased"] == {"conversations": 1, "turns": 1, "transcripts": 1, "feedback": 1}
    assert files_holding(config, hasher("bob")) == []


async def test_an_interrupted_erasure_finishes_at_the_next_start(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    config = api_key_config(make_config, tmp_path)
    first = await make_client(config)
    await use(first, "alice", 2)
    await use(first, "bob", 1)
    await first.close()
    alice = UserHasher.from_state_dir(config.service.state_dir)("alice")
    # Where a stop in the middle leaves it: the note written, nothing removed yet.
    write_note(
        erasure_notes_dir(config) / f"{alice}.json", {"user_hash": alice, "requested_at": "x", "server_done": False}
    )
    second = await make_client(config)
    assert files_holding(config, alice) == []
    assert (await (await second.get("/v1/conversations", headers=as_user("alice"))).json())["conversations"] == []
    assert len((await (await second.get("/v1/conversations", headers=as_user("bob"))).json())["conversations"]) == 1
    note = json.loads((erasure_notes_dir(config) / f"{alice}.json").read_text())
    assert note["server_done"] is True
    assert note["requested_at"] == "x"


async def test_the_command_line_asks_then_erases_through_the_running_server(
    make_client: ClientFactory, make_config: ConfigFactory
) -> None:
    config = make_config()  # noop: every caller holds the admin role
    client = await make_client(config)
    resp = await client.post("/v1/query?user_id=alice", json={"query": "How do I start the server?"})
    assert resp.status == 200
    alice = UserHasher.from_state_dir(config.service.state_dir)("alice")
    url = ["--url", str(client.make_url("")).rstrip("/")]
    unasked = await lightspeed("erase", "--user-id", "alice", *url)
    assert unasked.code == EXIT_USAGE
    assert "run it with --yes" in unasked.err
    declined = await lightspeed("erase", "--user-id", "alice", *url, typed="n\n")
    assert declined.code == 0
    assert declined.out.strip().endswith("nothing erased")
    assert len(files_holding(config, alice)) == 1
    erased = await lightspeed("erase", "--user-id", "alice", *url, typed="y\n")
    assert erased.code == 0
    assert "erased 1 conversations (1 turns), 1 transcripts and 0 feedback" in erased.out
    assert files_holding(config, alice) == []


def test_a_server_killed_in_the_middle_of_an_erasure_finishes_it_at_start(tmp_path: Path, docs_dir: Path) -> None:
    port = free_port()
    config = process_config(tmp_path, docs_dir, port)
    server = start(config, tmp_path)
    try:
        wait_ready(port, server)
        call(port, "POST", "/v1/query?user_id=alice", {"query": "How do I start the server?"}, token="t")
        feedback = tmp_path / "feedback"
        state = tmp_path / "state"
        alice = UserHasher.from_state_dir(state)("alice")
        # Many other records make the feedback scan long enough to be killed in.
        for n in range(30_000):
            (feedback / f"{uuid.uuid4()}.json").write_text(json.dumps({"user_id": "b" * 64, "n": n}))
        for _ in range(3):
            (feedback / f"{uuid.uuid4()}.json").write_text(json.dumps({"user_id": alice}))
        note = tmp_path / "spool" / "erasures" / f"{alice}.json"
        request = threading.Thread(target=_erase_quietly, args=(port,), daemon=True)
        request.start()
        deadline = time.monotonic() + 60
        while not (note.exists() and b'"server_done": false' in _read(note)):
            assert time.monotonic() < deadline, "the erasure never started"
            time.sleep(0.002)  # a poll, not a wait: the event is the note; the scan takes about a second
        _kill(server)  # SIGKILL: mid-erasure
        assert b'"server_done": false' in note.read_bytes()
        server = start(config, tmp_path)
        wait_ready(port, server)
        assert json.loads(note.read_bytes())["server_done"] is True
        holding = [p for p in tmp_path.rglob("*.json") if p != note and alice in f"{p}{p.read_text()}"]
        assert holding == []
        assert call(port, "GET", "/v1/conversations?user_id=alice", token="t")["conversations"] == []
        assert len(list(feedback.glob("*.json"))) == 30_000
    finally:
        _kill(server)


def _kill(server: subprocess.Popen[str]) -> None:
    server.kill()
    server.wait()
    if server.stdout is not None:
        server.stdout.close()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _erase_quietly(port: int) -> None:
    with contextlib.suppress(OSError):  # the server is killed while it answers
        call(port, "DELETE", "/v1/users/me/data?user_id=alice", token="t")


async def test_every_erasure_and_export_is_audited_and_the_audit_outlives_them(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    config = api_key_config(make_config, tmp_path)
    client, hasher = await api_key_client(make_client, config)
    await use(client, "alice", 2)
    with capture_logs() as logs:
        await (await client.get("/v1/users/me/data", headers=as_user("alice"))).read()
        await client.delete("/v1/users/me/data", headers=as_user("alice"))
        await client.delete("/v1/users/bob/data", headers=as_user("admin"))
    trail = await (await client.get("/v1/audit", headers=as_user("admin"))).json()
    alice, bob, admin = hasher("alice"), hasher("bob"), hasher("root-admin")
    assert [(e["action"], e["subject"], e["requested_by"], e["counts"]) for e in trail["events"]] == [
        ("erasure", bob, admin, {"conversations": 0, "turns": 0, "transcripts": 0, "feedback": 0}),
        ("erasure", alice, alice, {"conversations": 2, "turns": 2, "transcripts": 2, "feedback": 1}),
        ("export", alice, alice, {"conversations": 2, "feedback": 1, "transcripts": 2}),
    ]
    journal = [e for e in logs if e.get("message_id") == AUDIT_MESSAGE_ID]
    assert [(e["action"], e["subject"]) for e in journal] == [("export", alice), ("erasure", alice), ("erasure", bob)]
    assert "alice" not in json.dumps(trail)  # hashes only, never an id or any content
    newest = await (await client.get("/v1/audit?limit=1", headers=as_user("admin"))).json()
    assert newest["events"] == trail["events"][:1]
    assert (await client.get("/v1/audit", headers=as_user("alice"))).status == 403
