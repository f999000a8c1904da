"""The server as an operator runs it, for the tests that start the real process: start it, wait
until it is ready, call its API over loopback HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml


def start(config: dict[str, Any], tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "lightspeed", "serve", "--config", str(path), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def call(port: int, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read())


def wait_ready(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if call(port, "GET", "/readiness")["ready"]:
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the server did not become ready")


def process_config(tmp_path: Path, docs_dir: Path, port: int) -> dict[str, Any]:
    return {
        "service": {"port": port, "state_dir": str(tmp_path / "state")},
        "authentication": {"module": "noop-with-token"},
        "user_data_collection": {
            "feedback_enabled": True,
            "feedback_storage": str(tmp_path / "feedback"),
            "transcripts_enabled": True,
            "transcripts_storage": str(tmp_path / "transcripts"),
        },
        "answers": {"local": {"documents_dir": str(docs_dir)}},
        "logging": {"format": "json"},
    }
