"""Conversations with history: the /v1 and /v2 conversation API, follow-ups that see earlier turns,
ownership, deletion, restart, and the import of the old owners file."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from lightspeed.store.conversations import Turn
from lightspeed.store.sqlite import DATABASE_FILE, SCHEMA_VERSION, SQLiteStateStore
from lightspeed_common.config import AppConfig
from lightspeed_common.errors import StorageError
from tests.conftest import ClientFactory, StartupFailure
from tests.fake_llm import FakeLLM, openai_config
from tests.postgres import PgDatabase
from tests.support import transcripts_written

KEYS = [
    {"key": "alice-key-0123456789", "user_id": "alice", "role": "user"},
    {"key": "bob-key-0123456789", "user_id": "bob", "role": "user"},
    {"key": "admin-key-0123456789", "user_id": "root-admin", "role": "admin"},
]


def as_user(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}-key-0123456789"}


async def ask(client: Any, query: str, conversation_id: str | None = None, user: str = "alice") -> dict[str, Any]:
    body: dict[str, Any] = {"query": query}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    resp = await client.post(f"/v1/query?user_id={user}", json=body)
    assert resp.status == 200, await resp.text()
    answer: dict[str, Any] = await resp.json()
    return answer


async def test_a_three_turn_conversation_is_kept_and_read_back(client: Any) -> None:
    first = await ask(client, "How do I start the server?")
    cid = first["conversation_id"]
    second = await ask(client, "And how do I install it?", cid)
    third = await ask(client, "How do I turn feedback off?", cid)
    assert second["conversation_id"] == third["conversation_id"] == cid
    for version in ("v1", "v2"):
        resp = await client.get(f"/{version}/conversations/{cid}?user_id=alice")
        assert resp.status == 200
        body = await resp.json()
        assert body["conversation_id"] == cid
        history = body["chat_history"]
        assert [turn["messages"][0]["content"] for turn in history] == [
            "How do I start the server?",
            "And how do I install it?",
            "How do I turn feedback off?",
        ]
        assert [turn["messages"][1]["content"] for turn in history] == [
            first["response"],
            second["response"],
            third["response"],
        ]
        assert {(t["provider"], t["model"]) for t in history} == {("local", "extractive")}
        assert all(t["messages"][0]["type"] == "user" and t["messages"][1]["type"] == "assistant" for t in history)
    listed = (await (await client.get("/v1/conversations?user_id=alice")).json())["conversations"]
    assert [(c["conversation_id"], c["message_count"], c["topic_summary"]) for c in listed] == [
        (cid, 3, "How do I start the server?")
    ]
    assert listed[0]["last_used_provider"] == "local"
    v2 = (await (await client.get("/v2/conversations?user_id=alice")).json())["conversations"]
    assert [c["conversation_id"] for c in v2] == [cid]
    assert v2[0]["last_message_timestamp"] > 0
    assert (await (await client.get("/v2/conversations?user_id=bob")).json()) == {"conversations": []}


async def test_a_follow_up_that_refers_back_is_answered_from_the_earlier_question(client: Any) -> None:
    """Asked alone, "How do I turn it off?" finds nothing about feedback first; after a question about
    feedback, the follow-up's passages are about turning feedback off."""
    alone = await ask(client, "How do I turn it off?")
    first = await ask(client, "Where is feedback stored?")
    follow_up = await ask(client, "How do I turn it off?", first["conversation_id"])
    assert follow_up["rag_chunks"][0]["source"].endswith("feedback.md")
    assert "PUT /v1/feedback/status" in follow_up["response"]
    assert follow_up["rag_chunks"] != alone["rag_chunks"]


async def test_the_openai_provider_gets_the_earlier_turns_as_messages(
    make_client: ClientFactory,
    make_config: Any,
    llm: tuple[FakeLLM, str],
) -> None:
    fake, url = llm
    client = await make_client(openai_config(make_config, url))
    first = await ask(client, "How do I start the server?")
    cid = first["conversation_id"]
    await ask(client, "And then?", cid)
    await ask(client, "Thanks, and feedback?", cid)
    third = fake.requests[2]["messages"]
    assert [(m["role"], m["content"]) for m in third[1:]] == [
        ("user", "How do I start the server?"),
        ("assistant", "Use make run."),
        ("user", "And then?"),
        ("assistant", "Use make run."),
        ("user", "Thanks, and feedback?"),
    ]
    assert third[0]["role"] == "system"


async def three_questions(make_client: ClientFactory, make_config: Any, url: str, budget: int, first: str) -> None:
    """Three questions in one conversation under this history budget; the fake provider keeps each request."""
    config = openai_config(make_config, url)
    config = config.model_copy(update={"answers": config.answers.model_copy(update={"history_max_chars": budget})})
    client = await make_client(config)
    cid = (await ask(client, first))["conversation_id"]
    await ask(client, "Second?", cid)
    await ask(client, "Third?", cid)


async def test_the_history_sent_is_bounded_by_its_budget(
    make_client: ClientFactory,
    make_config: Any,
    llm: tuple[FakeLLM, str],
) -> None:
    fake, url = llm
    await three_questions(make_client, make_config, url, 40, "A first question that is long enough")
    roles = [m["role"] for m in fake.requests[2]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]  # only "Second?" and its answer fit
    assert fake.requests[2]["messages"][1]["content"] == "Second?"


async def test_long_answers_count_against_the_history_budget(
    make_client: ClientFactory,
    make_config: Any,
    llm: tuple[FakeLLM, str],
) -> None:
    """Item 23.11: with short questions and 5,000-character answers, a 6,000-character budget carries
    one earlier turn, not both: answers count as well as questions, so they cannot overflow the prompt."""
    fake, url = llm
    long_answer = "word " * 1000
    fake.body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": long_answer}}]})
    await three_questions(make_client, make_config, url, 6000, "First?")
    sent = [(m["role"], len(m["content"])) for m in fake.requests[2]["messages"][1:]]
    assert sent == [("user", len("Second?")), ("assistant", len(long_answer)), ("user", len("Third?"))]


async def test_only_the_owner_or_an_admin_reads_renames_or_deletes(
    make_client: ClientFactory, make_config: Any, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump(KEYS))
    client = await make_client(make_config(authentication={"module": "api-key", "api_key": {"keys_file": str(keys)}}))
    resp = await client.post("/v1/query", json={"query": "How do I start the server?"}, headers=as_user("alice"))
    cid = (await resp.json())["conversation_id"]
    for method, body, action in (
        ("GET", None, "read"),
        ("PUT", {"topic_summary": "x"}, "update"),
        ("DELETE", None, "delete"),
    ):
        refused = await client.request(method, f"/v2/conversations/{cid}", json=body, headers=as_user("bob"))
        assert refused.status == 403
        assert await refused.json() == {
            "detail": {
                "response": "User does not have permission to perform this action",
                "cause": f"User bob does not have permission to {action} conversation with ID {cid}",
            },
        }
    assert (await client.get("/v1/conversations", headers=as_user("bob"))).status == 200
    assert (await client.get(f"/v1/conversations/{cid}")).status == 401
    admin = await client.get(f"/v1/conversations/{cid}", headers=as_user("admin"))
    assert admin.status == 200
    renamed = await client.put(f"/v1/conversations/{cid}", json={"topic_summary": "Starting"}, headers=as_user("alice"))
    assert await renamed.json() == {
        "conversation_id": cid,
        "success": True,
        "message": "Topic summary updated successfully",
    }
    listed = await (await client.get("/v1/conversations", headers=as_user("alice"))).json()
    assert listed["conversations"][0]["topic_summary"] == "Starting"
    deleted = await client.delete(f"/v1/conversations/{cid}", headers=as_user("admin"))
    assert (await deleted.json())["deleted"] is True


async def test_delete_removes_the_history_and_keeps_the_transcripts(client: Any, config: AppConfig) -> None:
    cid = (await ask(client, "How do I start the server?"))["conversation_id"]
    await ask(client, "And install?", cid)
    resp = await client.delete(f"/v2/conversations/{cid}?user_id=alice")
    assert await resp.json() == {
        "conversation_id": cid,
        "deleted": True,
        "response": "Conversation deleted successfully",
        "success": True,
    }
    gone = await client.get(f"/v2/conversations/{cid}?user_id=alice")
    assert gone.status == 404
    assert await gone.json() == {
        "detail": {"response": "Conversation not found", "cause": f"Conversation with ID {cid} does not exist"},
    }
    again = await (await client.delete(f"/v2/conversations/{cid}?user_id=alice")).json()
    assert (again["deleted"], again["response"]) == (False, "Conversation not found")
    continued = await client.post("/v1/query?user_id=alice", json={"query": "more", "conversation_id": cid})
    assert continued.status == 404
    transcripts = config.user_data_collection.transcripts_storage
    assert transcripts is not None
    await transcripts_written(client)
    assert len(list(transcripts.rglob(f"{cid}/*.json"))) == 2


async def test_bad_ids_and_bodies_are_400_and_422(client: Any) -> None:
    bad = await client.get("/v1/conversations/not-a-uuid?user_id=alice")
    assert bad.status == 400
    assert await bad.json() == {
        "detail": {
            "response": "Invalid conversation ID format",
            "cause": "The conversation ID not-a-uuid has invalid format.",
        },
    }
    cid = (await ask(client, "How do I start the server?"))["conversation_id"]
    empty = await client.put(f"/v2/conversations/{cid}?user_id=alice", json={"topic_summary": ""})
    assert empty.status == 422
    assert (await empty.json())["detail"][0]["loc"] == ["body", "topic_summary"]
    unknown = await client.put(f"/v2/conversations/{uuid.uuid4()}?user_id=alice", json={"topic_summary": "x"})
    assert unknown.status == 404


async def test_history_survives_a_restart(make_client: ClientFactory, config: AppConfig) -> None:
    first = await make_client(config)
    cid = (await ask(first, "How do I start the server?"))["conversation_id"]
    await ask(first, "And install?", cid)
    await first.close()
    second = await make_client(config)
    body = await (await second.get(f"/v2/conversations/{cid}?user_id=alice")).json()
    assert [t["messages"][0]["content"] for t in body["chat_history"]] == ["How do I start the server?", "And install?"]


async def test_the_old_owners_file_is_imported_once_and_kept(make_client: ClientFactory, config: AppConfig) -> None:
    state = config.service.state_dir
    state.mkdir(parents=True, exist_ok=True)
    old = str(uuid.uuid4())
    from lightspeed.identity import UserHasher

    owner = UserHasher.from_state_dir(state)("alice")
    line = {"conversation_id": old, "user_hash": owner, "created": "2026-01-02T03:04:05+00:00"}
    (state / "conversations.jsonl").write_text(json.dumps(line) + "\n{torn")
    client = await make_client(config)
    assert (await client.post("/v1/query?user_id=bob", json={"query": "x", "conversation_id": old})).status == 403
    await ask(client, "How do I start the server?", old)
    assert not (state / "conversations.jsonl").exists()
    assert (state / "conversations.jsonl.migrated").read_text().startswith(json.dumps(line))
    listed = (await (await client.get("/v1/conversations?user_id=alice")).json())["conversations"]
    assert [(c["conversation_id"], c["created_at"], c["message_count"]) for c in listed] == [
        (old, "2026-01-02T03:04:05+00:00", 1)
    ]


async def test_remembered_owners_are_bounded_and_lookups_stay_right(tmp_path: Path) -> None:
    """Past its bound the store forgets the oldest owners it remembered, and still answers each from SQLite."""
    store = SQLiteStateStore(tmp_path / "c.sqlite3", remembered=2)
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for n, conversation_id in enumerate(ids):
        await store.add_turn(conversation_id, f"owner-{n}", Turn("q", "a", "m", "p", now, now))
    assert [await store.owner(c) for c in ids] == [f"owner-{n}" for n in range(5)]
    assert len(store._owners) == 2
    assert await store.owner(str(uuid.uuid4())) is None
    await store.close()


async def test_a_store_written_by_a_newer_release_stops_the_start_naming_the_file(
    startup_failure: StartupFailure, config: AppConfig
) -> None:
    state = config.service.state_dir
    state.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(state / DATABASE_FILE) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    error = await startup_failure(config)
    assert isinstance(error, StorageError)
    assert f"{DATABASE_FILE}: " in str(error)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(error)


async def test_with_several_workers_a_deletion_through_one_is_seen_by_another(
    make_client: ClientFactory, make_config: Any
) -> None:
    """Two workers (two apps on one store): the second has checked the owner once; after the first deletes
    the conversation, a follow-up through the second is 404, not a conversation brought back to life."""
    config = make_config(service={"workers": 2})
    first, second = await make_client(config), await make_client(config)
    answer = await ask(first, "How do I start the server?")
    conversation = answer["conversation_id"]
    await ask(second, "And stop it?", conversation)
    assert (await first.delete(f"/v2/conversations/{conversation}?user_id=alice")).status == 200
    resp = await second.post("/v1/query?user_id=alice", json={"query": "Again?", "conversation_id": conversation})
    assert resp.status == 404, await resp.text()
    await first.close()
    await second.close()


async def test_on_postgresql_conversations_continue_across_two_servers_and_config_names_it(
    make_client: ClientFactory, make_config: Any, pg_database: PgDatabase
) -> None:
    """`service.database.url`: two servers (two hosts) on one PostgreSQL database share conversations,
    the feedback toggle and its history; /v1/config says where, its password masked."""
    config = make_config(service={"database": pg_database.section()})
    first, second = await make_client(config), await make_client(config)
    answer = await ask(first, "How do I start the server?")
    await ask(second, "And stop it?", answer["conversation_id"])
    turns = await (await first.get(f"/v2/conversations/{answer['conversation_id']}?user_id=alice")).json()
    assert [m["content"] for t in turns["chat_history"] for m in t["messages"] if m["type"] == "user"] == [
        "How do I start the server?",
        "And stop it?",
    ]
    assert (await first.put("/v1/feedback/status", json={"status": False})).status == 200
    assert (await (await second.get("/v1/feedback/status")).json())["status"] == {"enabled": False}
    shown = (await (await second.get("/v1/config")).json())["configuration"]["conversation_cache"]
    assert shown == {
        "type": "postgres",
        "postgres": {
            "host": "127.0.0.1",
            "port": pg_database.server.port,
            "db": pg_database.name,
            "user": "postgres",
            "password": "********",
        },
    }
    assert pg_database.query("SELECT COUNT(*) FROM turns") == [(2,)]
    assert not (config.service.state_dir / DATABASE_FILE).exists()
    await first.close()
    await second.close()
