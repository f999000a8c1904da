"""The real `lightspeed` process: start-up, exit codes, log lines, a clean stop."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from lightspeed_common.errors import EXIT_CANTCREAT, EXIT_CONFIG
from tests.fake_llm import free_port
from tests.processes import call, process_config, start, wait_ready
from tests.support import json_files

REPO = Path(__file__).resolve().parents[2]


def test_serve_answers_records_logs_and_stops_cleanly(tmp_path: Path, docs_dir: Path) -> None:
    """A real server answers, writes one file per record, logs one safe JSON line per request, exits 0 on SIGTERM."""
    port = free_port()
    proc = start(process_config(tmp_path, docs_dir, port), tmp_path)
    try:
        wait_ready(port, proc)
        token = "tok-SECRET-0123456789"
        question = "How do I start the server? I am dave@example.com"
        answer = call(port, "POST", "/v1/query?user_id=dave-raw-id", {"query": question}, token)
        call(
            port,
            "POST",
            "/v1/feedback?user_id=dave-raw-id",
            {
                "conversation_id": answer["conversation_id"],
                "user_question": question,
                "llm_response": answer["response"],
                "sentiment": 1,
            },
            token,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert len(json_files(tmp_path / "transcripts")) == 1
    assert len(json_files(tmp_path / "feedback")) == 1
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    handled = [line for line in lines if line["event"] == "request_handled"]
    routes = [(line["route"], line["status"]) for line in handled]
    assert ("/v1/query", 200) in routes
    assert ("/v1/feedback", 200) in routes
    for line in handled:
        assert {"request_id", "route", "method", "status", "duration_ms", "level"} <= set(line)
    for forbidden in ("dave-raw-id", "dave@example.com", "How do I start", token, "make run"):
        assert forbidden not in output, forbidden
    assert any(line["event"] == "service_stopped" for line in lines)


def test_a_bad_config_exits_78_naming_the_key(tmp_path: Path) -> None:
    proc = start({"service": {"portt": 1}}, tmp_path)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_CONFIG
    assert "unknown key 'service.portt'" in output


@pytest.mark.usefixtures("small_tmpfs")
def test_an_unwritable_storage_directory_exits_73_naming_it(tmp_path: Path, docs_dir: Path, small_tmpfs: Any) -> None:
    """A storage directory on a read-only file system stops the start with a clear line."""
    readonly = small_tmpfs("ro", "size=64k,ro")
    config = process_config(tmp_path, docs_dir, free_port())
    config["user_data_collection"]["feedback_storage"] = str(readonly / "feedback")
    proc = start(config, tmp_path)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_CANTCREAT
    line = next(json.loads(x) for x in output.splitlines() if '"storage_unusable"' in x)
    assert line["what"] == "feedback_storage"
    assert line["path"] == str(readonly / "feedback")
    assert line["reason"] == "Read-only file system"


def test_a_missing_documents_folder_exits_78(tmp_path: Path, docs_dir: Path) -> None:
    config = process_config(tmp_path, docs_dir, free_port())
    config["answers"]["local"]["documents_dir"] = str(tmp_path / "nowhere")
    proc = start(config, tmp_path)
    output, _ = proc.communicate(timeout=90)
    assert proc.returncode == EXIT_CONFIG
    assert "answers.local.documents_dir" in output


def _readiness(port: int) -> tuple[int, dict[str, Any]]:
    try:
        return 200, call(port, "GET", "/readiness")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def start_cold(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    """Two of this repository's documents and an empty state directory: the index is built (seconds)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("ingest.md", "scaling.md"):
        shutil.copy(REPO / "docs" / name, docs)
    return start(process_config(tmp_path, docs, port), tmp_path)


def until_alive(proc: subprocess.Popen[str], port: int) -> float:
    """Wait until /liveness answers 200; the deadline used, for the waits after it."""
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None
        try:
            assert call(port, "GET", "/liveness") == {"alive": True}
            return deadline
        except urllib.error.URLError:  # refused: not listening yet
            assert time.monotonic() < deadline, "the socket never listened"
            time.sleep(0.05)


def test_sigterm_while_starting_stops_the_start(tmp_path: Path) -> None:
    """A stop while the model and the index load ends the start there (what was opened is closed) and
    exits 0: the answers never become ready."""
    port = free_port()
    proc = start_cold(tmp_path, port)
    try:
        until_alive(proc, port)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    events = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    assert "answers_ready" not in events
    assert "service_stopped" in events


def test_the_server_answers_while_it_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 28.4: the socket listens before the model and the index are loaded. Until then /liveness is
    200, /readiness is 503 naming the step (the index's passages counted), a query is 503 with
    Retry-After, and systemd has not been told READY=1; then all of them change together."""
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    port = free_port()
    proc = start_cold(tmp_path, port)
    try:
        deadline = until_alive(proc, port)
        with pytest.raises(urllib.error.HTTPError) as refused:
            call(port, "POST", "/v1/query", {"query": "How do I give feedback?"}, "tok")
        assert refused.value.code == 503
        assert refused.value.headers["Retry-After"] == "5"
        assert json.loads(refused.value.read())["detail"]["response"] == "Service is starting"
        reasons = []
        while (answer := _readiness(port))[0] == 503:
            assert answer[1]["ready"] is False
            reasons.append(answer[1]["reason"])
            if "answer index" in answer[1]["reason"]:
                systemd.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    while True:
                        assert b"READY=1" not in systemd.recv(4096)
                systemd.setblocking(True)
            assert time.monotonic() < deadline + 120, reasons[-1]
            time.sleep(0.05)
        assert any(re.fullmatch(r"loading: answer index \d+/\d+ passages", r) for r in reasons), set(reasons)
        assert all(r.startswith("loading: ") for r in reasons)
        systemd.settimeout(30)
        while b"READY=1" not in systemd.recv(4096):
            pass
        assert call(port, "POST", "/v1/query", {"query": "How do I give feedback?"}, "tok")["response"]
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        systemd.close()
    assert proc.returncode == 0, output
