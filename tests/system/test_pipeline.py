"""The whole pipeline as `make run` starts it: server, collector and lightspeed-ingest from one config."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import yaml

from tests.fake_llm import free_port
from tests.processes import call, wait_ready

REPO = Path(__file__).resolve().parents[2]


def pipeline_config(tmp_path: Path, docs_dir: Path, api: int, ingress_port: int, interval: int) -> Path:
    data = tmp_path / "data"
    config = {
        "service": {"port": api, "state_dir": str(tmp_path / "state")},
        "user_data_collection": {
            "feedback_enabled": True,
            "feedback_storage": str(data / "feedback"),
            "transcripts_enabled": True,
            "transcripts_storage": str(data / "transcripts"),
            "data_collector": {
                "enabled": True,
                "ingress_server_url": f"http://127.0.0.1:{ingress_port}/api/ingress/v1/upload",
                "ingress_server_auth_token": "dev-token",
                "ingress_content_service_name": "lightspeed",
                "collection_interval": interval,
            },
        },
        "answers": {"local": {"documents_dir": str(docs_dir)}},
        "telemetry": {
            "registry_url": f"http://127.0.0.1:{ingress_port}/api/v1/telemetry",
            "first_send_delay_seconds": 600,
        },
        "ingest": {
            "port": ingress_port,
            "state_dir": str(tmp_path / "ingest"),
            "admin_key": "admin-key",
            "uploads": {"tokens": ["dev-token"]},
        },
        "logging": {"format": "json"},
    }
    path = tmp_path / "lightspeed.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_devrun(path: Path) -> subprocess.Popen[str]:
    """`make run`'s process, in a session of its own so a test can Ctrl-C its group as a terminal would."""
    return subprocess.Popen(
        [sys.executable, str(REPO / "dev" / "run.py"), "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        start_new_session=True,
    )


class Output:
    """A process's output, read as it comes (so the pipe never fills), with a wait for a line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 90) -> None:
        with self._changed:
            found = self._changed.wait_for(lambda: any(text in line for line in self._lines), timeout)
        assert found, f"no line with {text!r} in {timeout} s:\n" + self.text()[-3000:]

    def text(self, timeout: float = 60) -> str:
        """Everything, once the process has closed its output."""
        self._reader.join(timeout)
        assert self._proc.stdout is not None
        self._proc.stdout.close()
        with self._changed:
            return "".join(self._lines)


def archived_members(received: Path) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    for archive in received.rglob("*.tar.gz"):
        with tarfile.open(fileobj=io.BytesIO(archive.read_bytes())) as tar:
            members.update({m.name: tar.extractfile(m).read() for m in tar.getmembers()})  # type: ignore[union-attr]
    return members


def test_records_and_telemetry_reach_the_ingest(tmp_path: Path, docs_dir: Path) -> None:
    """A query and its feedback, given over HTTP, arrive at lightspeed-ingest within one interval and
    leave the disk; opt-in telemetry, once enabled and sent, shows in the ingest's model counts."""
    api, ingress_port = free_port(), free_port()
    data = tmp_path / "data"
    proc = start_devrun(pipeline_config(tmp_path, docs_dir, api, ingress_port, interval=2))
    received = tmp_path / "ingest" / "archives"
    try:
        wait_ready(api, proc)
        answer = call(api, "POST", "/v1/query", {"query": "How do I start the server?"})
        call(
            api,
            "POST",
            "/v1/feedback",
            {"conversation_id": answer["conversation_id"], "user_question": "q", "llm_response": "r", "sentiment": 1},
        )
        deadline = time.monotonic() + 15
        members: dict[str, bytes] = {}
        while time.monotonic() < deadline and len(members) < 2:
            members = archived_members(received)
            time.sleep(0.2)
        consent = call(api, "GET", "/v1/telemetry/consent")
        call(api, "PUT", "/v1/telemetry", {"enabled": True, "consent_version": consent["version"]})
        registered = call(
            api,
            "POST",
            "/v1/embedding-models",
            {"model_name": "all-MiniLM-L6-v2", "model_source": "sentence-transformers"},
        )
        sent = call(api, "POST", "/v1/telemetry/send?wait=10")
        uploads = call(ingress_port, "GET", "/api/admin/v1/uploads", token="admin-key")
        models = call(ingress_port, "GET", "/api/admin/v1/models", token="admin-key")["models"]
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    kinds = sorted(name.split("/")[0] for name in members)
    assert kinds == ["feedback", "transcripts"], output
    feedback = json.loads(next(v for k, v in members.items() if k.startswith("feedback/")))
    assert feedback["conversation_id"] == answer["conversation_id"]
    assert sorted(p for p in data.rglob("*.json") if "spool" not in p.parts) == []
    assert uploads["totals"]["records"] == 2, uploads
    assert registered["model"]["load_success"] is True
    assert registered["telemetry"]["queued"] is True
    assert sent["accepted"] == 1, sent
    assert [(m["model_name"], m["embedding_dimension"], m["clients"]) for m in models] == [("all-MiniLM-L6-v2", 384, 1)]
    assert proc.returncode == 0, output


def test_ctrl_c_delivers_waiting_records_before_the_ingest_stops(tmp_path: Path, docs_dir: Path) -> None:
    """Ctrl-C (SIGINT to the terminal's whole process group) with records waiting and an hour-long interval:
    the server stops, the collector's final flush reaches the ingest, then the ingest stops; quickly."""
    api, ingress_port = free_port(), free_port()
    proc = start_devrun(pipeline_config(tmp_path, docs_dir, api, ingress_port, interval=3600))
    output = Output(proc)
    try:
        # What a user waits for: the ready line (devrun prints it once it sees /readiness answer).
        output.wait_for(f"lightspeed is ready: http://127.0.0.1:{api}")
        answer = call(api, "POST", "/v1/query", {"query": "How do I start the server?"})
        feedback = {"conversation_id": answer["conversation_id"], "user_question": "q", "llm_response": "r"}
        call(api, "POST", "/v1/feedback", feedback | {"sentiment": 1})
    finally:
        stopped_at = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    took = time.monotonic() - stopped_at
    text = output.text()
    members = archived_members(tmp_path / "ingest" / "archives")
    assert proc.returncode == 0, text
    assert sorted(name.split("/")[0] for name in members) == ["feedback", "transcripts"], text[-3000:]
    assert "flush_abandoned_on_stop" not in text
    assert took < 15, text[-3000:]
    assert f"curl -s http://127.0.0.1:{api}/v1/query" in text
