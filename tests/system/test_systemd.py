"""The three daemons under a real, booted systemd: install, start, serve, ship, log, stop, crash, misconfigure.

One container for the module (see systemd_harness.py). The services are
installed with packaging/install.sh, exactly as the README's "Install as a
service" says, reusing this checkout's .venv. The collector ships to
lightspeed-ingest.service in the same container, and telemetry goes to it too.
As a site past one machine runs them (docs/scaling.md): the API server with
`workers: 2`, and the ingest on PostgreSQL, the container's own
postgresql.service, ordered before it by a drop-in.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.postgres_storage import MIGRATIONS as INGEST_MIGRATIONS
from tests.fake_llm import free_port
from tests.system.systemd_harness import REPO, Container, booted

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(600)]
ADMIN_KEY = "systemd-test-admin-key-0123456789"
INGEST_ADMIN_KEY = "systemd-test-ingest-admin-key-42"
UPLOAD_TOKEN = "systemd-test-upload-token-0987654321"
UNITS = ("lightspeed-ingest.service", "lightspeed.service", "lightspeed-collector.service")
WORKERS = 2
DB_PASSWORD = "systemd-test-database-password-77"
INGEST_DROP_IN = """[Unit]
Wants=postgresql.service
After=postgresql.service
"""


DOCS_INDEX = "/mnt/docs-answer-index"  # the run's answer index of docs/ (`docs_index`), inside the container
STATE_INDEX = "/var/lib/lightspeed/answer-index"


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory, docs_index: Path) -> Iterator[Container]:
    with booted(tmp_path_factory.mktemp("container"), {docs_index: DOCS_INDEX}) as booted_container:
        yield booted_container


def vector_files(container: Container) -> list[tuple[str, str]]:
    """The server's stored vectors: each file's path under the index and when it was written."""
    found = container.run("find", STATE_INDEX, "-name", "*.npz", "-printf", "%P %T@\n").out.splitlines()
    return sorted((path, written) for path, written in (line.split() for line in found))


@pytest.fixture(scope="module")
def ingest_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def pg_port() -> int:
    return free_port()


def service_config(port: int, ingress_port: int) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((REPO / "config" / "lightspeed.production.yaml").read_text())
    config["service"].update(port=port, shutdown_timeout_seconds=5, workers=WORKERS)
    config["user_data_collection"]["data_collector"].update(
        enabled=True,
        ingress_server_url=f"http://127.0.0.1:{ingress_port}/api/ingress/v1/upload",
        collection_interval=2,
    )
    config["collector"]["retry"] = {"initial_seconds": 0.2, "max_seconds": 1, "jitter_seconds": 0, "max_attempts": 3}
    config["collector"]["shutdown_grace_seconds"] = 5
    config["telemetry"]["registry_url"] = f"http://127.0.0.1:{ingress_port}/api/v1/telemetry"
    return config


def ingest_config(port: int, pg_port: int) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((REPO / "config" / "ingest.production.yaml").read_text())
    config["ingest"].update(port=port, shutdown_timeout_seconds=5)
    config["ingest"]["database"]["url"] = f"postgresql://lightspeed_ingest@127.0.0.1:{pg_port}/lightspeed_ingest"
    return config


def psql(container: Container, pg_port: int, sql: str, database: str = "postgres") -> str:
    return container.run("runuser", "-u", "postgres", "--", "psql", "-p", str(pg_port), "-d", database, "-Atc", sql).out


def prepare_postgresql(container: Container, pg_port: int) -> None:
    """The container's postgresql.service on a free loopback port, a role and a database for the ingest."""
    settings = f"port = {pg_port}\nlisten_addresses = '127.0.0.1'\n"
    container.write("/etc/postgresql/15/main/conf.d/lightspeed-tests.conf", settings)
    container.run("systemctl", "restart", "postgresql.service", timeout=120)
    container.wait_for("postgresql@15-main.service", "ActiveState", {"active"}, timeout=120)
    psql(container, pg_port, f"CREATE ROLE lightspeed_ingest LOGIN PASSWORD '{DB_PASSWORD}'")
    psql(container, pg_port, "CREATE DATABASE lightspeed_ingest OWNER lightspeed_ingest")


@pytest.fixture(scope="module")
def installed(container: Container, ingest_port: int, pg_port: int) -> int:
    """The README's install steps; returns the API port."""
    venv = REPO / ".venv"
    out = container.run(str(REPO / "packaging" / "install.sh"), "--venv", str(venv)).out
    assert "systemctl enable --now lightspeed lightspeed-collector" in out
    assert "systemctl enable --now lightspeed-ingest" in out
    port = free_port()
    config = yaml.safe_dump(service_config(port, ingest_port))
    container.write("/etc/lightspeed/lightspeed.yaml", config, mode="0640", owner="root:lightspeed")
    keys = f"- {{key: {ADMIN_KEY}, user_id: operator, role: admin}}\n"
    container.write("/etc/lightspeed/credentials/api-keys.yaml", keys, mode="0600")
    container.write("/etc/lightspeed/credentials/ingress-token", UPLOAD_TOKEN + "\n", mode="0600")
    prepare_postgresql(container, pg_port)
    ingest = yaml.safe_dump(ingest_config(ingest_port, pg_port))
    container.write("/etc/lightspeed-ingest/ingest.yaml", ingest, mode="0640", owner="root:lightspeed-ingest")
    container.write("/etc/lightspeed-ingest/credentials/upload-tokens", UPLOAD_TOKEN + "\n", mode="0600")
    container.write("/etc/lightspeed-ingest/credentials/admin-key", INGEST_ADMIN_KEY + "\n", mode="0600")
    container.write("/etc/lightspeed-ingest/credentials/database-password", DB_PASSWORD + "\n", mode="0600")
    container.write("/etc/systemd/system/lightspeed-ingest.service.d/postgresql.conf", INGEST_DROP_IN)
    container.run("systemctl", "daemon-reload")
    # The answer index of docs/ built on the host, as an operator may bake one into an image: embedding
    # the installed copy again would cost minutes on a loaded machine (test_start_... checks it is used).
    container.run("install", "-d", "-o", "lightspeed", "-g", "lightspeed", "-m", "0750", "/var/lib/lightspeed")
    container.run("cp", "-r", DOCS_INDEX, STATE_INDEX)
    container.run("chown", "-R", "lightspeed:lightspeed", STATE_INDEX)
    return port


def ingest_api(port: int, path: str) -> Any:
    status, body = api(port, "GET", path, key=INGEST_ADMIN_KEY)
    assert status == 200, body
    return body


def ingest_members(container: Container, pg_port: int, pattern: str) -> list[str]:
    """Record names the ingest has indexed, read from its PostgreSQL database inside the container."""
    quoted = pattern.replace("'", "''")
    sql = f"SELECT member FROM records WHERE member LIKE '{quoted}'"  # noqa: S608 - the test's own pattern
    return psql(container, pg_port, sql, "lightspeed_ingest").split()


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
    for unit in ("lightspeed.service", "lightspeed-ingest.service"):  # many (and slow) clients at once
        assert container.show(unit, "LimitNOFILE") == {"LimitNOFILE": "65536"}


def test_start_reaches_active_only_when_ready_to_serve(
    container: Container, installed: int, ingest_port: int, docs_index: Path
) -> None:
    container.run("systemctl", "stop", *UNITS)
    seeded = vector_files(container)
    container.run("systemctl", "start", "lightspeed-ingest.service", timeout=60)
    ingest = container.show("lightspeed-ingest.service", "ActiveState", "StatusText")
    ingest_ready = api(ingest_port, "GET", "/readiness", key=None)
    container.run("systemctl", "start", "--no-block", "lightspeed.service")
    starting = container.show("lightspeed.service", "ActiveState", "SubState")
    active = container.wait_for("lightspeed.service", "ActiveState", {"active", "failed"}, timeout=300)
    status, body = api(installed, "GET", "/readiness", key=None)  # no retry: READY means serving
    text = container.show("lightspeed.service", "StatusText")["StatusText"]
    container.run("systemctl", "start", "lightspeed-collector.service", timeout=120)
    collector = container.show("lightspeed-collector.service", "ActiveState", "SubState", "StatusText")

    assert ingest == {"ActiveState": "active", "StatusText": f"serving on 127.0.0.1:{ingest_port}"}
    assert ingest_ready == (200, {"ready": True, "reason": "database open"})
    assert (starting["ActiveState"], starting["SubState"]) == ("activating", "start")
    assert active["ActiveState"] == "active"
    assert active["SubState"] == "running"
    assert status == 200
    assert body["ready"] is True
    assert text == f"serving with {WORKERS} workers"
    assert (collector["ActiveState"], collector["SubState"]) == ("active", "running")
    assert "new records pending" in collector["StatusText"]
    # The index built over docs/ on the host served the copy under /usr/share/doc: nothing embedded again.
    assert [path for path, _ in seeded] == sorted(str(p.relative_to(docs_index)) for p in docs_index.rglob("*.npz"))
    assert vector_files(container) == seeded


def test_queries_and_feedback_from_the_host_reach_the_ingest(
    container: Container, running: int, ingest_port: int, pg_port: int
) -> None:
    before = ingest_api(ingest_port, "/api/admin/v1/uploads")["totals"]
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
    totals = before
    while time.monotonic() < deadline and totals.get("feedback_records", 0) <= before.get("feedback_records", 0):
        time.sleep(0.2)
        totals = ingest_api(ingest_port, "/api/admin/v1/uploads")["totals"]
    status_text = container.show("lightspeed-collector.service", "StatusText")["StatusText"]
    conversation = ingest_members(container, pg_port, f"transcripts/%/{answer['conversation_id']}/%")

    assert totals["feedback_records"] == before.get("feedback_records", 0) + 1
    assert len(conversation) == 1
    assert totals["duplicate_records"] == before["duplicate_records"]
    assert "last upload never" not in status_text


def test_opt_in_telemetry_reaches_the_ingests_registry(container: Container, running: int, ingest_port: int) -> None:
    status, consent = api(running, "GET", "/v1/telemetry/consent")
    assert status == 200
    status, body = api(running, "PUT", "/v1/telemetry", {"enabled": True, "consent_version": consent["version"]})
    assert status == 200, body
    model = {"model_name": "all-MiniLM-L6-v2", "model_source": "sentence-transformers"}
    status, body = api(running, "POST", "/v1/embedding-models", model)
    assert status == 201, body
    status, sent = api(running, "POST", "/v1/telemetry/send?wait=20")
    models = ingest_api(ingest_port, "/api/admin/v1/models")["models"]

    assert (status, sent["accepted"]) == (200, 1), sent
    assert [(m["model_name"], m["clients"], m["events"]) for m in models] == [("all-MiniLM-L6-v2", 1, 1)]


def test_the_journal_filters_by_priority_and_shows_the_fields(container: Container, running: int) -> None:
    question = "journal-canary question about kubeconfig"
    api(running, "POST", "/v1/query", {"query": question})
    bad = {"model_name": "journal-canary", "model_source": "local_path", "local_path": "/nonexistent/model"}
    status, _ = api(running, "POST", "/v1/embedding-models", bad)
    assert status == 422
    time.sleep(0.5)  # the log writer thread hands lines to journald asynchronously
    warnings = container.run("journalctl", "-u", "lightspeed", "-p", "warning", "-o", "json", "--no-pager").out
    entries = [json.loads(line) for line in warnings.splitlines()]
    everything = container.run(
        "journalctl", "-u", "lightspeed", "-u", "lightspeed-collector", "-u", "lightspeed-ingest", "-o", "json"
    ).out
    collector = [json.loads(line) for line in everything.splitlines() if '"lightspeed-collector"' in line]
    ingest = [json.loads(line) for line in everything.splitlines() if '"lightspeed-ingest"' in line]

    assert entries, "no warning in the journal"
    assert all(int(e["PRIORITY"]) <= 4 for e in entries)
    assert any(
        e.get("EVENT") == "embedding_model_registered" and e.get("ERROR_CODE") == "path_not_found" for e in entries
    )
    assert not any(e.get("EVENT") == "request_handled" for e in entries)  # info lines are filtered out
    assert any(e.get("EVENT") == "collector_started" and e.get("SPOOL") for e in collector)
    assert any(e.get("EVENT") == "upload_stored" and e.get("UPLOAD_REQUEST_ID") for e in ingest)
    for secret in (ADMIN_KEY, question, UPLOAD_TOKEN, INGEST_ADMIN_KEY):
        assert secret not in everything
    assert "installation_id_unavailable" not in everything  # the server made it before the collector started


def workers(container: Container) -> list[str]:
    """The pids of lightspeed.service's workers: the children of its main process."""
    main = container.show("lightspeed.service", "MainPID")["MainPID"]
    return container.run("cat", f"/proc/{main}/task/{main}/children").out.split()


def test_the_ingest_runs_on_the_containers_postgresql_and_the_server_with_two_workers(
    container: Container, running: int, ingest_port: int, pg_port: int
) -> None:
    after = container.show("lightspeed-ingest.service", "After", "Wants")
    tables = psql(
        container, pg_port, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", "lightspeed_ingest"
    )
    version = psql(
        container, pg_port, "SELECT version FROM schema_version WHERE component = 'ingest'", "lightspeed_ingest"
    )
    children = workers(container)
    journal = container.run("journalctl", "-u", "lightspeed", "-o", "json", "--no-pager").out
    ready = [json.loads(line) for line in journal.splitlines() if '"worker_ready"' in line]

    assert "postgresql.service" in after["After"].split()
    assert "postgresql.service" in after["Wants"].split()
    assert {"uploads", "records", "upload_users", "erasures", "deletions"} <= set(tables.split())
    assert version.strip() == str(len(INGEST_MIGRATIONS))
    assert container.run("ls", "/var/lib/lightspeed-ingest").out.split().count("ingest.sqlite3") == 0
    assert len(children) == WORKERS
    assert {int(e["WORKER"]) for e in ready} == set(range(WORKERS))
    assert DB_PASSWORD not in container.run("journalctl", "-u", "lightspeed-ingest", "--no-pager").out


def test_a_killed_worker_is_replaced_under_the_same_unit(container: Container, running: int) -> None:
    main = container.show("lightspeed.service", "MainPID")["MainPID"]
    [victim, *_] = workers(container)
    container.run("sh", "-c", f"kill -KILL {victim}")  # the shell's kill: procps is not in the container
    deadline = time.monotonic() + 120
    children: list[str] = []
    while time.monotonic() < deadline:
        children = workers(container)
        journal = container.run("journalctl", "-u", "lightspeed", "-o", "cat", "--no-pager", "-n", "50").out
        if len(children) == WORKERS and victim not in children and journal.count("worker_ready") >= 1:
            break
        time.sleep(0.5)
    state = container.show("lightspeed.service", "ActiveState", "MainPID", "NRestarts")
    status, body = api(running, "GET", "/readiness", key=None)

    assert victim not in children
    assert len(children) == WORKERS
    assert state["MainPID"] == main  # the unit did not restart: the main process replaced its worker
    assert state["ActiveState"] == "active"
    journal = container.run("journalctl", "-u", "lightspeed", "-o", "cat", "--no-pager").out.splitlines()
    assert any("worker_exited" in line and f"pid={victim}" in line and "SIGKILL" in line for line in journal)
    assert (status, body["ready"]) == (200, True)


def test_stop_is_graceful_and_quick(container: Container, running: int) -> None:
    started = time.monotonic()
    container.run("systemctl", "stop", "lightspeed.service")
    seconds = time.monotonic() - started
    state = container.show("lightspeed.service", "ActiveState", "Result", "ExecMainStatus")
    journal = container.run("journalctl", "-u", "lightspeed", "-o", "cat", "-n", "20", "--no-pager").out

    assert state == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    assert seconds < 15
    assert "service_stopped" in journal


def test_a_killed_collector_is_restarted_and_loses_no_record(container: Container, running: int, pg_port: int) -> None:
    """The ingest is down, so the batch is claimed and packaged but unsent when the collector is killed."""
    container.run("systemctl", "stop", "lightspeed-ingest.service")
    restarts = int(container.show("lightspeed-collector.service", "NRestarts")["NRestarts"])
    names = [f"kill9-{i}.json" for i in range(20)]
    for name in names:
        container.write(
            f"/var/lib/lightspeed-data/feedback/{name}", json.dumps({"n": name}), "0640", "lightspeed:lightspeed"
        )
    deadline = time.monotonic() + 30
    claimed = ""
    while not claimed and time.monotonic() < deadline:
        time.sleep(0.1)
        claimed = container.run("find", "/var/lib/lightspeed-data/spool/outbox", "-name", "*.tar.gz").out
    container.run("systemctl", "kill", "--signal=KILL", "lightspeed-collector.service")
    container.run("systemctl", "start", "lightspeed-ingest.service", timeout=60)
    container.wait_for("lightspeed-collector.service", "NRestarts", {str(restarts + 1)}, timeout=60)
    container.wait_for("lightspeed-collector.service", "ActiveState", {"active"}, timeout=60)
    deadline = time.monotonic() + 60
    delivered: list[str] = []
    while time.monotonic() < deadline and len(delivered) < len(names):
        time.sleep(0.5)
        delivered = ingest_members(container, pg_port, "feedback/kill9-%")
    left = container.run("find", "/var/lib/lightspeed-data", "-name", "kill9-*").out

    assert claimed, "the collector never claimed and packaged the records"
    assert sorted(Path(m).name for m in delivered) == sorted(names)  # each exactly once
    assert left == ""


@pytest.mark.parametrize(
    ("unit", "config", "owner"),
    [
        ("lightspeed", "/etc/lightspeed/lightspeed.yaml", "root:lightspeed"),
        ("lightspeed-ingest", "/etc/lightspeed-ingest/ingest.yaml", "root:lightspeed-ingest"),
    ],
)
def test_a_broken_config_fails_once_without_a_restart_loop(
    container: Container, running: int, unit: str, config: str, owner: str
) -> None:
    good = container.run("cat", config).out
    container.write(config, good + "\nnot_a_section: {}\n", "0640", owner)
    try:
        container.run("systemctl", "restart", f"{unit}.service", check=False, timeout=120)
        failed = container.wait_for(f"{unit}.service", "ActiveState", {"failed"}, timeout=60)
        time.sleep(3)  # longer than RestartSec: a restart loop would have begun
        later = container.show(f"{unit}.service", "ActiveState", "NRestarts", "ExecMainStatus")
        journal = container.run("journalctl", "-u", unit, "-p", "err", "-o", "cat", "-n", "5").out
    finally:
        container.write(config, good, "0640", owner)
        container.run("systemctl", "reset-failed", f"{unit}.service")
        container.run("systemctl", "start", f"{unit}.service", timeout=300)

    assert failed["ExecMainStatus"] == "78"
    assert later == {"ActiveState": "failed", "NRestarts": "0", "ExecMainStatus": "78"}
    assert "unknown key 'not_a_section'" in journal


def test_directories_have_the_intended_owners_and_modes(container: Container, running: int) -> None:
    api(running, "POST", "/v1/query", {"query": "How do I check a config file?"})

    def stat(path: str) -> str:
        return container.run("stat", "-c", "%U:%G %a", path).out.strip()

    # Owner and mode in the same call that finds the file: the collector may ship it any moment.
    transcripts = container.run(
        "find", "/var/lib/lightspeed-data/transcripts", "-name", "*.json", "-printf", "%u:%g %m\\n"
    ).out.splitlines()
    assert stat("/var/lib/lightspeed") == "lightspeed:lightspeed 750"
    assert stat("/var/lib/lightspeed/user-hash.key") == "lightspeed:lightspeed 600"
    assert stat("/var/lib/lightspeed/installation-id") == "lightspeed:lightspeed 640"
    assert stat("/var/lib/lightspeed-data") == "lightspeed:lightspeed 2770"
    assert stat("/var/lib/lightspeed-data/feedback") == "lightspeed:lightspeed 2770"
    assert stat("/var/lib/lightspeed-data/spool") == "lightspeed-collector:lightspeed 2770"
    assert stat("/etc/lightspeed") == "root:lightspeed 750"
    assert stat("/etc/lightspeed/credentials") == "root:root 700"
    assert all(line.startswith("lightspeed:lightspeed 6") for line in transcripts), transcripts
    assert container.run("id", "-gn", "lightspeed-collector").out.strip() == "lightspeed"
    assert stat("/var/lib/lightspeed-ingest") == "lightspeed-ingest:lightspeed-ingest 750"
    assert stat("/var/lib/lightspeed/conversations.sqlite3") == "lightspeed:lightspeed 600"
    assert stat("/run/lightspeed/metrics") == "lightspeed:lightspeed 750"  # the workers' metric files
    assert stat("/etc/lightspeed-ingest/credentials/database-password") == "root:root 600"
    assert stat("/etc/lightspeed-ingest") == "root:lightspeed-ingest 750"
    assert stat("/etc/lightspeed-ingest/credentials/admin-key") == "root:root 600"
    archives = container.run("find", "/var/lib/lightspeed-ingest/archives", "-name", "*.tar.gz").out.split()
    assert archives
    assert stat(archives[0]) == "lightspeed-ingest:lightspeed-ingest 640"
    assert "lightspeed" not in container.run("id", "-Gn", "lightspeed-ingest").out.split()


def test_uninstall_removes_the_services_and_keeps_the_data(container: Container, installed: int) -> None:
    out = container.run(str(REPO / "packaging" / "uninstall.sh"), "--prefix", "/opt/lightspeed").out
    units = container.run("systemctl", "list-unit-files", "lightspeed*", "--no-legend", check=False).out

    assert "kept" in out
    assert units.strip() == ""
    assert container.run("test", "-d", "/var/lib/lightspeed-data").code == 0
    assert container.run("test", "-d", "/var/lib/lightspeed-ingest/archives").code == 0  # the index is in PostgreSQL


def test_a_collector_only_host_gets_the_collector_alone(container: Container, installed: int) -> None:
    """Issue 28.5: `install.sh --role collector` installs its unit and configuration, not the others'."""
    container.run(str(REPO / "packaging" / "uninstall.sh"), "--prefix", "/opt/lightspeed")
    out = container.run(
        str(REPO / "packaging" / "install.sh"), "--role", "collector", "--venv", str(REPO / ".venv")
    ).out
    units = container.run("systemctl", "list-unit-files", "lightspeed*", "--no-legend", check=False).out.split()

    assert "role collector: lightspeed-collector" in out
    assert "systemctl enable --now lightspeed-collector" in out
    assert "lightspeed-ingest" not in out
    assert [u for u in units if u.startswith("lightspeed")] == ["lightspeed-collector.service"]
    assert container.run("test", "-e", "/etc/lightspeed/credentials/ingress-token").code == 0
    container.run(str(REPO / "packaging" / "uninstall.sh"), "--prefix", "/opt/lightspeed")
