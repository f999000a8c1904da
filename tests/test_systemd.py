"""Both daemons under a real, booted systemd: install, start, serve, ship, log, stop, crash, misconfigure.

One container for the module (see systemd_harness.py). The services are
installed with packaging/install.sh, exactly as the README's "Install as a
service" says, reusing this checkout's .venv. The ingress is the scripted
fake from tests/ingress.py, on the host's 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.ingress import Ingress, Reply
from tests.systemd_harness import REPO, Container, booted
from tests.test_openai_provider import free_port

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(600)]
ADMIN_KEY = "systemd-test-admin-key-0123456789"
UNITS = ("lightspeed.service", "lightspeed-collector.service")


class ThreadedIngress:
    """The fake ingress served from its own thread and event loop, so tests stay synchronous."""

    def __init__(self, ingress: Ingress, port: int) -> None:
        self.ingress = ingress
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(ingress.app())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedIngress:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def ingress() -> Iterator[ThreadedIngress]:
    with ThreadedIngress(Ingress(), free_port()) as served:
        yield served


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    with booted(tmp_path_factory.mktemp("container")) as booted_container:
        yield booted_container


def service_config(port: int, ingress_port: int) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((REPO / "config" / "lightspeed.production.yaml").read_text())
    config["service"].update(port=port, shutdown_timeout_seconds=5)
    config["user_data_collection"]["data_collector"].update(
        enabled=True,
        ingress_server_url=f"http://127.0.0.1:{ingress_port}/api/ingress/v1/upload",
        collection_interval=2,
    )
    config["collector"]["retry"] = {"initial_seconds": 0.2, "max_seconds": 1, "jitter_seconds": 0, "max_attempts": 3}
    config["collector"]["shutdown_grace_seconds"] = 5
    return config


@pytest.fixture(scope="module")
def installed(container: Container, ingress: ThreadedIngress) -> int:
    """The README's install steps; returns the API port."""
    venv = REPO / ".venv"
    out = container.run(str(REPO / "packaging" / "install.sh"), "--venv", str(venv)).out
    assert "systemctl enable --now lightspeed lightspeed-collector" in out
    port = free_port()
    config = yaml.safe_dump(service_config(port, ingress.port))
    container.write("/etc/lightspeed/lightspeed.yaml", config, mode="0640", owner="root:lightspeed")
    keys = f"- {{key: {ADMIN_KEY}, user_id: operator, role: admin}}\n"
    container.write("/etc/lightspeed/credentials/api-keys.yaml", keys, mode="0600")
    container.run("systemctl", "daemon-reload")
    return port


def api(port: int, method: str, path: str, body: Any = None, key: str | None = ADMIN_KEY) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback only
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture
def running(container: Container, installed: int) -> int:
    for unit in UNITS:
        if container.show(unit, "ActiveState")["ActiveState"] != "active":
            container.run("systemctl", "start", unit, timeout=300)
    return installed


def test_the_units_verify_cleanly_and_are_hardened(container: Container, installed: int) -> None:
    for unit in UNITS:
        verify = container.run("systemd-analyze", "verify", f"/etc/systemd/system/{unit}", check=False)
        assert verify.code == 0, verify.err
        assert verify.err == ""
        shipped = REPO / "packaging" / "systemd" / unit
        security = container.run("systemd-analyze", "security", "--offline=yes", str(shipped), check=False)
        exposure = float(security.out.rsplit("exposure level for", 1)[1].split(":")[1].split()[0])
        assert exposure <= 2.0, security.out


def test_start_reaches_active_only_when_ready_to_serve(container: Container, installed: int) -> None:
    container.run("systemctl", "stop", *UNITS)
    container.run("systemctl", "start", "--no-block", "lightspeed.service")
    starting = container.show("lightspeed.service", "ActiveState", "SubState")
    active = container.wait_for("lightspeed.service", "ActiveState", {"active", "failed"}, timeout=300)
    status, body = api(installed, "GET", "/readiness", key=None)  # no retry: READY means serving
    text = container.show("lightspeed.service", "StatusText")["StatusText"]
    container.run("systemctl", "start", "lightspeed-collector.service", timeout=120)
    collector = container.show("lightspeed-collector.service", "ActiveState", "SubState", "StatusText")

    assert (starting["ActiveState"], starting["SubState"]) == ("activating", "start")
    assert active["ActiveState"] == "active"
    assert active["SubState"] == "running"
    assert status == 200
    assert body["ready"] is True
    assert text == f"serving on 127.0.0.1:{installed}"
    assert (collector["ActiveState"], collector["SubState"]) == ("active", "running")
    assert "new records pending" in collector["StatusText"]


def test_queries_and_feedback_from_the_host_reach_the_ingress(
    container: Container, running: int, ingress: ThreadedIngress
) -> None:
    before = len(ingress.ingress.accepted)
    status, answer = api(running, "POST", "/v1/query", {"query": "How do I give feedback?"})
    assert status == 200, answer
    feedback = {
        "conversation_id": answer["conversation_id"],
        "user_question": "How do I give feedback?",
        "llm_response": answer["response"],
        "sentiment": 1,
    }
    status, body = api(running, "POST", "/v1/feedback", feedback)
    assert status == 200, body
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sum(len(r.members) for r in ingress.ingress.accepted[before:]) < 2:
        time.sleep(0.2)
    members = [name for received in ingress.ingress.accepted[before:] for name in received.members]
    status_text = container.show("lightspeed-collector.service", "StatusText")["StatusText"]

    assert any(name.startswith("feedback/") for name in members), members
    assert any(name.startswith("transcripts/") for name in members), members
    assert "last upload never" not in status_text


def test_the_journal_filters_by_priority_and_shows_the_fields(container: Container, running: int) -> None:
    question = "journal-canary question about kubeconfig"
    api(running, "POST", "/v1/query", {"query": question})
    bad = {"model_name": "journal-canary", "model_source": "local_path", "local_path": "/nonexistent/model"}
    status, _ = api(running, "POST", "/v1/embedding-models", bad)
    assert status == 422
    time.sleep(0.5)  # the log writer thread hands lines to journald asynchronously
    warnings = container.run("journalctl", "-u", "lightspeed", "-p", "warning", "-o", "json", "--no-pager").out
    entries = [json.loads(line) for line in warnings.splitlines()]
    everything = container.run("journalctl", "-u", "lightspeed", "-u", "lightspeed-collector", "-o", "json").out
    collector = [json.loads(line) for line in everything.splitlines() if '"lightspeed-collector"' in line]

    assert entries, "no warning in the journal"
    assert all(int(e["PRIORITY"]) <= 4 for e in entries)
    assert any(
        e.get("EVENT") == "embedding_model_registered" and e.get("ERROR_CODE") == "path_not_found" for e in entries
    )
    assert not any(e.get("EVENT") == "request_handled" for e in entries)  # info lines are filtered out
    assert any(e.get("EVENT") == "collector_started" and e.get("SPOOL") for e in collector)
    for secret in (ADMIN_KEY, question):
        assert secret not in everything
    assert "installation_id_unavailable" not in everything  # the server made it before the collector started


def test_stop_is_graceful_and_quick(container: Container, running: int) -> None:
    started = time.monotonic()
    container.run("systemctl", "stop", "lightspeed.service")
    seconds = time.monotonic() - started
    state = container.show("lightspeed.service", "ActiveState", "Result", "ExecMainStatus")
    journal = container.run("journalctl", "-u", "lightspeed", "-o", "cat", "-n", "20", "--no-pager").out

    assert state == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    assert seconds < 15
    assert "service_stopped" in journal


def test_a_killed_collector_is_restarted_and_loses_no_record(
    container: Container, running: int, ingress: ThreadedIngress
) -> None:
    fake = ingress.ingress
    fake.default = Reply(delay=3)  # slow uploads: the kill lands mid-upload
    restarts = int(container.show("lightspeed-collector.service", "NRestarts")["NRestarts"])
    names = [f"kill9-{i}.json" for i in range(20)]
    for name in names:
        container.write(
            f"/var/lib/lightspeed-data/feedback/{name}", json.dumps({"n": name}), "0640", "lightspeed:lightspeed"
        )
    attempts = len(fake.attempts)
    deadline = time.monotonic() + 30
    while len(fake.attempts) == attempts and time.monotonic() < deadline:
        time.sleep(0.05)
    container.run("systemctl", "kill", "--signal=KILL", "lightspeed-collector.service")
    fake.default = Reply()
    container.wait_for("lightspeed-collector.service", "NRestarts", {str(restarts + 1)}, timeout=60)
    container.wait_for("lightspeed-collector.service", "ActiveState", {"active"}, timeout=60)
    deadline = time.monotonic() + 60
    delivered: set[str] = set()
    while time.monotonic() < deadline and not set(names) <= delivered:
        delivered = {Path(m).name for r in fake.accepted for m in r.members}
        time.sleep(0.2)
    left = container.run("find", "/var/lib/lightspeed-data", "-name", "kill9-*").out

    assert len(fake.attempts) > attempts
    assert set(names) <= delivered
    assert left == ""


def test_a_broken_config_fails_once_without_a_restart_loop(container: Container, running: int) -> None:
    good = container.run("cat", "/etc/lightspeed/lightspeed.yaml").out
    container.write("/etc/lightspeed/lightspeed.yaml", good + "\nnot_a_section: {}\n", "0640", "root:lightspeed")
    try:
        container.run("systemctl", "restart", "lightspeed.service", check=False, timeout=120)
        failed = container.wait_for("lightspeed.service", "ActiveState", {"failed"}, timeout=60)
        time.sleep(3)  # longer than RestartSec: a restart loop would have begun
        later = container.show("lightspeed.service", "ActiveState", "NRestarts", "ExecMainStatus")
        journal = container.run("journalctl", "-u", "lightspeed", "-p", "err", "-o", "cat", "-n", "5").out
    finally:
        container.write("/etc/lightspeed/lightspeed.yaml", good, "0640", "root:lightspeed")
        container.run("systemctl", "reset-failed", "lightspeed.service")

    assert failed["ExecMainStatus"] == "78"
    assert later == {"ActiveState": "failed", "NRestarts": "0", "ExecMainStatus": "78"}
    assert "unknown key 'not_a_section'" in journal


def test_directories_have_the_intended_owners_and_modes(container: Container, running: int) -> None:
    api(running, "POST", "/v1/query", {"query": "How do I check a config file?"})

    def stat(path: str) -> str:
        return container.run("stat", "-c", "%U:%G %a", path).out.strip()

    transcript = container.run("find", "/var/lib/lightspeed-data/transcripts", "-name", "*.json").out.split()
    assert stat("/var/lib/lightspeed") == "lightspeed:lightspeed 750"
    assert stat("/var/lib/lightspeed/user-hash.key") == "lightspeed:lightspeed 600"
    assert stat("/var/lib/lightspeed/installation-id") == "lightspeed:lightspeed 640"
    assert stat("/var/lib/lightspeed-data") == "lightspeed:lightspeed 2770"
    assert stat("/var/lib/lightspeed-data/feedback") == "lightspeed:lightspeed 2770"
    assert stat("/var/lib/lightspeed-data/spool") == "lightspeed-collector:lightspeed 2770"
    assert stat("/etc/lightspeed") == "root:lightspeed 750"
    assert stat("/etc/lightspeed/credentials") == "root:root 700"
    if transcript:  # the collector may already have shipped it
        assert stat(transcript[0]).startswith("lightspeed:lightspeed 6")
    assert container.run("id", "-gn", "lightspeed-collector").out.strip() == "lightspeed"


def test_uninstall_removes_the_services_and_keeps_the_data(container: Container, installed: int) -> None:
    out = container.run(str(REPO / "packaging" / "uninstall.sh"), "--prefix", "/opt/lightspeed").out
    units = container.run("systemctl", "list-unit-files", "lightspeed*", "--no-legend", check=False).out

    assert "kept" in out
    assert units.strip() == ""
    assert container.run("test", "-d", "/var/lib/lightspeed-data").code == 0
