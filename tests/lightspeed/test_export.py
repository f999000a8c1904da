"""A user's access request: their conversations, feedback and transcripts on this side as one JSON
document, streamed; only theirs."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from structlog.testing import capture_logs

from lightspeed.api.state import SERVER
from lightspeed.store.conversations import Turn
from lightspeed_common.config import AppConfig
from tests.conftest import ClientFactory, ConfigFactory
from tests.lightspeed.test_conversations import as_user
from tests.lightspeed.test_erasure import api_key_client, api_key_config, use
from tests.lightspeed.test_settings_cli import lightspeed
from tests.support import (
    asked_while_a_transcript_is_written,
    assert_left_midway,
    http_request,
    leave_after_the_status_line,
    on_terminal,
)


async def test_a_user_exports_exactly_their_own_data(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    config = api_key_config(make_config, tmp_path)
    client, hasher = await api_key_client(make_client, config)
    alices = await use(client, "alice", 3)
    await use(client, "bob", 2)
    resp = await client.get("/v1/users/me/data", headers=as_user("alice"))
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    text = await resp.text()
    assert hasher("bob") not in text
    document = json.loads(text)
    assert document["user_id"] == "alice"
    assert sorted(c["conversation_id"] for c in document["conversations"]) == alices
    questions = sorted(t["question"] for c in document["conversations"] for t in c["turns"])
    assert questions == [f"How do I start the server? ({n})" for n in range(3)]
    assert all("owner" not in c for c in document["conversations"])
    assert [f["user_id"] for f in document["feedback"]] == [hasher("alice")]
    assert document["feedback"][0]["llm_response"] == "make run"
    # One transcript per turn, in the turn's conversation.
    per_turn = sorted(c["conversation_id"] for c in document["conversations"] for _ in c["turns"])
    assert sorted(t["metadata"]["conversation_id"] for t in document["transcripts"]) == per_turn
    assert {t["metadata"]["user_id"] for t in document["transcripts"]} == {hasher("alice")}


async def test_an_export_asked_right_after_an_answer_holds_its_transcript(
    make_client: ClientFactory, config: AppConfig
) -> None:
    """The transcript is written after its answer is sent; an export asked meanwhile waits for it."""
    client = await make_client(config)
    response = await asked_while_a_transcript_is_written(client, "GET", "/v1/users/me/data")
    document = json.loads(await response.text())
    assert len(document["transcripts"]) == 1


async def test_a_client_that_leaves_in_the_middle_of_an_export_is_an_info_line_not_a_failure(
    make_client: ClientFactory, config: AppConfig
) -> None:
    """The client reads the status line of a long export, then resets the connection: the server's next
    write fails. That is the client's doing, not the server's: one info line, no `request_failed` with a
    traceback, and no error response written after the one already begun."""
    client = await make_client(config)
    server = client.app[SERVER]
    owner = server.hasher(config.authentication.default_user_id)
    now = datetime.now(UTC)
    for _ in range(400):  # about 3 MB of document: more than the socket buffers hold
        await server.store.add_turn(str(uuid.uuid4()), owner, Turn("q", "a" * 8000, "m", "p", now, now))
    with capture_logs() as logs:
        head = await leave_after_the_status_line(client, http_request("GET", "/v1/users/me/data"), logs)
    assert head.startswith(b"HTTP/1.1 200 ")
    await assert_left_midway(client, logs, "lightspeed", "/v1/users/me/data")


async def test_only_an_admin_exports_another_user(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    config = api_key_config(make_config, tmp_path)
    client, _ = await api_key_client(make_client, config)
    await use(client, "bob", 1)
    assert (await client.get("/v1/users/bob/data", headers=as_user("alice"))).status == 403
    document = await (await client.get("/v1/users/bob/data", headers=as_user("admin"))).json()
    assert (len(document["conversations"]), len(document["feedback"]), len(document["transcripts"])) == (1, 1, 1)
    empty = await (await client.get("/v1/users/me/data", headers=as_user("alice"))).json()
    assert (empty["conversations"], empty["feedback"], empty["transcripts"]) == ([], [], [])


async def test_the_command_line_writes_the_document_to_a_private_file_or_standard_output(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    client = await make_client(make_config())  # noop: every caller holds the admin role
    resp = await client.post("/v1/query?user_id=alice", json={"query": "How do I start the server?"})
    conversation = (await resp.json())["conversation_id"]
    url = ["--url", str(client.make_url("")).rstrip("/")]
    target = tmp_path / "alice.json"
    written = await lightspeed("export", "--user-id", "alice", *url, "--output", str(target))
    assert written.code == 0
    assert target.stat().st_mode & 0o777 == 0o600
    document = json.loads(target.read_text())
    assert [c["conversation_id"] for c in document["conversations"]] == [conversation]
    assert not target.with_name(".alice.json.tmp").exists()
    printed = await lightspeed("export", "--user-id", "alice", *url)
    assert json.loads(printed.out)["conversations"] == document["conversations"]


async def test_the_command_line_lists_the_audit_trail(make_client: ClientFactory, make_config: ConfigFactory) -> None:
    client = await make_client(make_config())  # noop: every caller holds the admin role
    await client.delete("/v1/users/me/data?user_id=alice")
    url = ["--url", str(client.make_url("")).rstrip("/")]
    listed = await lightspeed("audit", *url)
    assert listed.code == 0
    header, row = listed.out.strip().splitlines()
    assert header.split() == ["at", "action", "subject", "requested", "by", "counts"]
    assert row.split()[1] == "erasure"
    assert row.endswith("conversations=0 feedback=0 transcripts=0 turns=0")
    as_json = await lightspeed("audit", "--json", *url)
    assert [e["action"] for e in json.loads(as_json.out)] == ["erasure"]


async def test_the_command_line_export_shows_its_progress_on_a_terminal(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Path
) -> None:
    client = await make_client(make_config())  # noop: every caller holds the admin role
    await client.post("/v1/query?user_id=alice", json={"query": "How do I start the server?"})
    url = ["--url", str(client.make_url("")).rstrip("/")]
    command = [sys.executable, "-m", "lightspeed", "export", "--user-id", "alice", *url]
    code, text = await on_terminal(command, tmp_path / "alice.json")  # `lightspeed export ... > alice.json`
    assert code == 0, text
    assert "exporting:" in text
    assert "B/s" in text
    assert json.loads((tmp_path / "alice.json").read_text())["user_id"] == "alice"
