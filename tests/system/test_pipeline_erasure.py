"""A user's erasure end to end, with the server, the collector and lightspeed-ingest running as processes, on
SQLite and on PostgreSQL: alice's records are at every stage (shipped, claimed in a batch the ingest has not
taken, still in the storage folders) when she is erased; afterwards no file of any of the three, nor the
ingest's index, holds her hash, bob's records all arrive and stay, and the audit lists the erasure."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lightspeed.identity import UserHasher
from tests.fake_llm import free_port
from tests.ingest_support import everything_stored
from tests.processes import call, wait_ready
from tests.support import deep_merge
from tests.system.test_pipeline import pipeline_config

INGEST_TABLES = {
    "uploads",
    "records",
    "upload_users",
    "erasures",
    "models",
    "contributions",
    "seen_events",
    "deletions",
}
KEYS = [
    {"key": "alice-key-0123456789", "user_id": "alice", "role": "user"},
    {"key": "bob-key-0123456789", "user_id": "bob", "role": "user"},
    {"key": "admin-key-0123456789", "user_id": "root-admin", "role": "admin"},
]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Both daemons' `database` section: their own SQLite files, or one real PostgreSQL database."""
    return {} if request.param == "sqlite" else request.getfixturevalue("pg_database").section()


def pipeline(tmp_path: Path, docs_dir: Path, database: dict[str, Any], api: int, ingest: int) -> Path:
    """`make run`'s config (test_pipeline), with api keys, the database, and quick retries: the ingest down,
    a batch is tried a few times, then stays claimed for the next flush."""
    (tmp_path / "keys.yaml").write_text(yaml.safe_dump(KEYS))
    path = pipeline_config(tmp_path, docs_dir, api, ingest, interval=1)
    overrides = {
        "service": {"database": database},
        "authentication": {"module": "api-key", "api_key": {"keys_file": str(tmp_path / "keys.yaml")}},
        "collector": {"retry": {"initial_seconds": 0.05, "jitter_seconds": 0, "max_attempts": 2}},
        "ingest": {"database": database},
    }
    path.write_text(yaml.safe_dump(deep_merge(yaml.safe_load(path.read_text()), overrides)))
    return path


class Daemons:
    """The three processes, each started and stopped on its own (SIGTERM, as systemctl stop)."""

    def __init__(self, config: Path, logs: Path) -> None:
        self.config = config
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *command: str) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:  # the child keeps its own copy open
            self.running[name] = subprocess.Popen(
                [sys.executable, "-m", *command, "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )

    def stop(self, name: str) -> None:
        proc = self.running.pop(name)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (self.logs / f"{name}.log").read_text()[-3000:]

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def until(condition: Callable[[], bool], what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not seen within {seconds} s: {what}"
        time.sleep(0.1)


def ingest_ready(port: int) -> bool:
    try:
        return bool(call(port, "GET", "/readiness")["ready"])
    except OSError:
        return False


def ask(api: int, user: str, question: str, feedback: bool) -> None:
    token = f"{user}-key-0123456789"
    answer = call(api, "POST", "/v1/query", {"query": question}, token=token)
    if feedback:
        body = {"conversation_id": answer["conversation_id"], "user_question": question, "llm_response": "r"}
        call(api, "POST", "/v1/feedback", body | {"sentiment": 1}, token=token)


def files(folder: Path) -> Iterator[tuple[Path, bytes]]:
    """Every file under `folder`, archives decompressed (a name counts as content too)."""
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            yield path, (gzip.decompress(data) if path.name.endswith(".gz") else data) + str(path).encode()


def holding(folder: Path, user_hash: str) -> list[Path]:
    return [path for path, data in files(folder) if user_hash.encode() in data]


def archived_of(archives: Path, user_hash: str) -> int:
    """How many records of the user the ingest's archives hold (one member a `"user_id": ...` each)."""
    return sum(data.count(f'"user_id": "{user_hash}"'.encode()) for _, data in files(archives))


def test_erasing_a_user_removes_every_copy_on_every_side_and_nothing_of_anyone_else(
    tmp_path: Path, docs_dir: Path, database: dict[str, Any]
) -> None:
    api, ingest_port = free_port(), free_port()
    daemons = Daemons(pipeline(tmp_path, docs_dir, database, api, ingest_port), tmp_path)
    data, archives, spool = tmp_path / "data", tmp_path / "ingest" / "archives", tmp_path / "data" / "spool"
    try:
        daemons.start("ingest", "ingest", "serve")
        until(lambda: ingest_ready(ingest_port), "the ingest ready")
        daemons.start("server", "lightspeed", "serve")
        wait_ready(api, daemons.running["server"])  # type: ignore[arg-type]
        hasher = UserHasher.from_state_dir(tmp_path / "state")
        alice, bob = hasher("alice"), hasher("bob")
        daemons.start("collector", "collector", "run")
        # Shipped: each user's first question and feedback reach the ingest.
        ask(api, "alice", "How do I start the server?", feedback=True)
        ask(api, "bob", "How do I start the server?", feedback=True)
        until(
            lambda: archived_of(archives, alice) == 2 and archived_of(archives, bob) == 2, "the first records shipped"
        )
        # Claimed: the ingest is down, so the collector's batch holding alice's second records stays claimed
        # (its manifest lists them where the server wrote them) and packaged (its archive in the outbox).
        daemons.stop("ingest")
        second = "How do I configure feedback?"
        ask(api, "alice", second, feedback=True)
        until(lambda: any(second.encode() in data for _, data in files(spool / "outbox")), "alice's second packaged")
        daemons.stop("collector")
        # Still in the storage folders: nothing claims them while the collector is stopped.
        ask(api, "alice", "What is the collector?", feedback=True)
        ask(api, "bob", "What is the collector?", feedback=True)
        erased = call(api, "DELETE", "/v1/users/me/data", token="alice-key-0123456789")
        assert erased["erased"] == {"conversations": 3, "turns": 3, "transcripts": 2, "feedback": 2}
        daemons.start("ingest", "ingest", "serve")
        until(lambda: ingest_ready(ingest_port), "the ingest ready again")
        daemons.start("collector", "collector", "run")
        until(lambda: not any((spool / "erasures").iterdir()), "the erasure record shipped (its note removed)")
        erasures = call(ingest_port, "GET", "/api/admin/v1/erasures", token="admin-key")["erasures"]
        until(
            lambda: all(
                e["done_at"] for e in call(ingest_port, "GET", "/api/admin/v1/erasures", token="admin-key")["erasures"]
            ),
            "the ingest's erasure applied",
        )
        until(lambda: archived_of(archives, bob) == 4, "all of bob's records at the ingest")
        audit = call(api, "GET", "/v1/audit", token="admin-key-0123456789")["events"]
    finally:
        daemons.stop_all()
    assert holding(data, alice) == []  # storage folders and the spool
    assert holding(tmp_path / "ingest", alice) == []  # archives, and the SQLite index when it is there
    # The ingest's index (on PostgreSQL the server shares the database: its audit names alice, as it should).
    assert alice.encode() not in everything_stored(tmp_path / "ingest", database, INGEST_TABLES)
    if database:
        assert alice.encode() in everything_stored(tmp_path / "ingest", database, {"audit"})
    assert archived_of(archives, bob) == 4
    assert len(erasures) == 1
    assert [(e["action"], e["subject"], e["counts"]) for e in audit] == [
        ("erasure", alice, {"conversations": 3, "turns": 3, "transcripts": 2, "feedback": 2})
    ]
