"""The systemd notify protocol, as the real processes speak it to a real datagram socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lightspeed_common.notify import Notifier
from tests.fake_llm import free_port
from tests.processes import call, process_config


class NotifySocket:
    """What systemd does: bind a datagram socket and read the messages the service sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def wait_for(self, key: str, value: str | None = None, timeout: float = 120, contains: str = "") -> dict[str, str]:
        """The first message (received before or within `timeout`) with `key` [= value | containing `contains`]."""

        def matches(message: dict[str, str]) -> bool:
            found = message.get(key)
            return found is not None and (value is None or found == value) and contains in found

        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages:
                if matches(message):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {key}={value or '...' + contains + '...'} in {self.messages}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536).decode()
            except TimeoutError:
                continue
            self.messages.append(dict(line.split("=", 1) for line in data.splitlines()))


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.sock.close()


def run(
    module: str, args: list[str], config: dict[str, object], tmp_path: Path, env: dict[str, str]
) -> subprocess.Popen[str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.Popen(
        [sys.executable, "-m", module, *args, "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
    )


def test_the_server_is_ready_only_when_it_serves_pings_the_watchdog_and_says_it_stops(
    tmp_path: Path, docs_dir: Path, notify_socket: NotifySocket
) -> None:
    port = free_port()
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "400000"}
    proc = run("lightspeed", ["serve"], process_config(tmp_path, docs_dir, port), tmp_path, env)
    try:
        ready = notify_socket.wait_for("READY", "1")
        ready_body = call(port, "GET", "/readiness")  # no retry: READY means it answers now
        notify_socket.wait_for("WATCHDOG", "1", timeout=5)
        proc.send_signal(signal.SIGTERM)
        stopping = notify_socket.wait_for("STOPPING", "1", timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]

    assert ready["STATUS"] == f"serving on 127.0.0.1:{port}"
    assert ready["MAINPID"] == str(proc.pid)
    assert ready_body["ready"] is True
    assert stopping["STATUS"] == "finishing in-flight requests"
    assert proc.returncode == 0, output


def test_the_collector_is_ready_after_recovery_and_reports_its_status(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    from tests.ingress import write_record

    feedback = tmp_path / "feedback"
    feedback.mkdir()
    config = {
        "service": {"state_dir": str(tmp_path / "state")},
        "user_data_collection": {
            "feedback_enabled": True,
            "feedback_storage": str(feedback),
            "data_collector": {
                "enabled": True,
                "ingress_server_url": f"http://127.0.0.1:{free_port()}/api/ingress/v1/upload",
                "ingress_content_service_name": "lightspeed",
                "collection_interval": 3600,
            },
        },
        "collector": {"retry": {"max_attempts": 1, "initial_seconds": 0}},
        "logging": {"format": "json"},
    }
    write_record(feedback, "a.json", {"n": 1})
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "400000"}
    proc = run("collector", ["run"], config, tmp_path, env)
    try:
        ready = notify_socket.wait_for("READY", "1", timeout=60)
        after_flush = notify_socket.wait_for("STATUS", contains="last error", timeout=30)
        write_record(feedback, "b.json", {"n": 2})
        seen = notify_socket.wait_for("STATUS", contains="1 new records pending", timeout=10)
        notify_socket.wait_for("WATCHDOG", "1", timeout=5)
        proc.send_signal(signal.SIGTERM)
        stopping = notify_socket.wait_for("STOPPING", "1", timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]

    assert "last upload never" in ready["STATUS"]
    assert "Cannot connect" in after_flush["STATUS"]  # the ingress is down: the status says so
    assert seen["STATUS"].startswith("1 new records pending")
    assert stopping["STATUS"] == "finishing or abandoning the upload in flight"
    assert proc.returncode == 0, output


def test_without_systemd_notifying_does_nothing() -> None:
    notifier = Notifier.from_environment({})
    notifier.ready("serving")
    assert notifier.enabled is False
    assert notifier.watchdog_interval() is None


def test_the_watchdog_interval_is_half_the_timeout_and_only_for_our_pid(tmp_path: Path) -> None:
    mine = Notifier.from_environment(
        {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    )
    other = Notifier.from_environment({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"})
    assert mine.watchdog_interval() == 1.5
    assert other.watchdog_interval() is None
