"""The real daemons against clients that misbehave on purpose: bad header bytes, silence, trickles.

Each test starts the process an operator runs (`python -m ingest` or
`python -m lightspeed`) and talks raw TCP to it on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import resource
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.fake_llm import free_port
from tests.ingest_support import ARCHIVE_TYPE, TOKEN, records_archive
from tests.support import open_descriptors

# Each timeout its own value (item 23.15: all three were 0.5 s, so none could be told from another).
FAST = {
    "header_timeout_seconds": 0.4,
    "body_timeout_seconds": 0.8,
    "keepalive_timeout_seconds": 1.6,
    "min_body_bytes_per_second": 100,
}
API_KEY = "lsk_this-admin-key-must-never-reach-a-log-line-0123456789"


class Daemon:
    """A daemon process with its combined output, stopped with SIGTERM at the end."""

    def __init__(self, module: str, config: dict[str, Any], tmp_path: Path, port: int, nofile: int | None) -> None:
        path = tmp_path / f"{module}.yaml"
        path.write_text(yaml.safe_dump(config))
        self.port = port

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "serve", "--config", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=limit,  # noqa: PLW1509 - only setrlimit, before exec
        )
        self.output = ""

    def get(self, path: str) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as resp:
            return int(resp.status)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()[0]
            with contextlib.suppress(OSError):
                self.get("/readiness")
                return
            time.sleep(0.1)
        raise AssertionError("not ready in time")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.output, _ = self.proc.communicate(timeout=60)
        return self.output


@contextlib.contextmanager
def ingest(tmp_path: Path, nofile: int | None = None, **overrides: Any) -> Iterator[Daemon]:
    port = free_port()
    section = {"state_dir": str(tmp_path / "ingest"), "port": port, "admin_key": API_KEY, "timeouts": FAST}
    section["uploads"] = {"tokens": [TOKEN]}
    daemon = Daemon("ingest", {"ingest": section | overrides, "logging": {"format": "json"}}, tmp_path, port, nofile)
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.stop()


@contextlib.contextmanager
def server(tmp_path: Path, docs_dir: Path) -> Iterator[Daemon]:
    port = free_port()
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump([{"key": API_KEY, "user_id": "operator", "role": "admin"}]))
    config = {
        "service": {"port": port, "state_dir": str(tmp_path / "state"), "timeouts": FAST},
        "authentication": {"module": "api-key", "api_key": {"keys_file": str(keys)}},
        "answers": {"local": {"documents_dir": str(docs_dir)}},
        "logging": {"format": "json"},
    }
    daemon = Daemon("lightspeed", config, tmp_path, port, None)
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.stop()


def raw(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(data)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the observable event)."""
    received = b""
    with sock:
        while chunk := sock.recv(65536):
            received += chunk
    return received


BAD_BYTES = [b"\r", b"\x00", b"\x01", b"\x7f"]


def send_keys_with_bad_bytes(port: int) -> list[bytes]:
    replies = []
    for bad in BAD_BYTES:
        request = b"GET /liveness HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + API_KEY.encode() + bad
        replies.append(read_until_closed(raw(port, request + b"\r\n\r\n")))
    return replies


def assert_scrubbed(output: str) -> None:
    assert API_KEY not in output
    assert API_KEY[:20] not in output
    unparseable = [json.loads(line) for line in output.splitlines() if "http_request_unparseable" in line]
    assert len(unparseable) == len(BAD_BYTES), output[-3000:]
    for line in unparseable:
        assert line["level"] == "warning"
        assert line["status"] == 400
        assert "exception" not in line


def test_the_ingest_never_logs_a_key_from_an_unparseable_header(tmp_path: Path) -> None:
    """Each of \\r, \\x00, \\x01, \\x7f after the admin key: 400, and one warning without the bytes."""
    with ingest(tmp_path) as daemon:
        replies = send_keys_with_bad_bytes(daemon.port)
    assert all(reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n")[0] for reply in replies)
    assert_scrubbed(daemon.output)


def test_the_server_never_logs_a_key_from_an_unparseable_header(tmp_path: Path, docs_dir: Path) -> None:
    with server(tmp_path, docs_dir) as daemon:
        send_keys_with_bad_bytes(daemon.port)
        idle = raw(daemon.port, b"GET /liveness HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = idle.recv(65536)
        # A kept-alive connection left idle is closed after keepalive_timeout_seconds.
        rest = read_until_closed(idle)
    assert first.startswith(b"HTTP/1.1 200")
    assert rest == b""
    assert_scrubbed(daemon.output)


def test_silent_connections_are_closed_and_do_not_exhaust_descriptors(tmp_path: Path) -> None:
    """300 connections that never finish a request line, with 128 descriptors: each is closed after the
    header timeout, and /liveness answers afterwards (before, they stayed open for hours)."""
    with ingest(tmp_path, nofile=128) as daemon:
        stalled = [raw(daemon.port, b"GET /liveness HTTP/1.1\r\nHost: 1") for _ in range(300)]
        assert [read_until_closed(sock) for sock in stalled] == [b""] * 300
        assert daemon.get("/liveness") == 200
    at = daemon.output.find("Exception in callback")
    assert at == -1, daemon.output[at : at + 3000]  # the callback and its traceback, not the whole log


def test_a_stop_while_out_of_descriptors_is_clean_and_says_so_once(tmp_path: Path) -> None:
    """150 silent connections with 128 descriptors, then SIGTERM at once, while an upload trickles in (so
    the stop outlasts asyncio's one-second accept back-off): no callback fails on the closed listening
    socket (before: "Invalid file descriptor: -1"), and the failed accepts are one warning that names
    the limit (before: up to 100 errors with tracebacks per loop pass)."""
    upload = multipart_upload("f" * 32)
    slow = {"header_timeout_seconds": 0.4, "body_timeout_seconds": 2}
    with ingest(tmp_path, nofile=128, uploads={"tokens": [TOKEN], "min_bytes_per_second": 1}, timeouts=slow) as daemon:
        trickling = raw(daemon.port, upload[:-30])
        deadline = time.monotonic() + 30
        while not list((tmp_path / "ingest").rglob("*.tmp")):  # its file is open before the descriptors run out
            assert time.monotonic() < deadline, "the upload was not spooled"
        stalled = [raw(daemon.port, b"GET /liveness HTTP/1.1\r\nHost: 1") for _ in range(150)]
        daemon.proc.send_signal(signal.SIGTERM)
        # A byte every 0.1 s, then the answer (the body is read during the stop): the stop lasts 3 s, past the back-off.
        assert trickle(trickling, upload[-30:]).startswith(b"HTTP/1.1 202")
        for sock in stalled:
            sock.close()
    lines = [json.loads(line) for line in daemon.output.splitlines() if line.startswith("{")]
    assert [line for line in lines if line.get("logger") == "asyncio"] == []
    warnings = [line for line in lines if line["event"] == "connections_not_accepted"]
    assert len(warnings) == 1, warnings
    assert warnings[0]["open_files_limit"] == 128
    assert "Too many open files" in warnings[0]["error"]


def held_connection(port: int) -> socket.socket:
    """A kept-alive connection that has been answered: the daemon holds a descriptor for it."""
    sock = raw(port, b"GET /liveness HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    return sock


def test_a_request_that_finds_no_descriptor_left_gets_503_with_retry_after(tmp_path: Path) -> None:
    """An upload accepted on the process's last descriptor cannot open its spool file: 503 with Retry-After
    and one warning that names the limit (before: a 500 and a traceback); with descriptors free again,
    the same upload is stored."""
    limit = 64
    idle = FAST | {"keepalive_timeout_seconds": 60}
    with contextlib.ExitStack() as held, ingest(tmp_path, nofile=limit, timeouts=idle) as daemon:
        pid = daemon.proc.pid
        holding: list[socket.socket] = []
        deadline = time.monotonic() + 60
        while (count := open_descriptors(pid)) != limit - 1:  # one left; a descriptor still closing goes soon
            assert time.monotonic() < deadline, count
            if count < limit - 1:
                holding.append(held.enter_context(held_connection(daemon.port)))
            else:
                time.sleep(0.01)
        with raw(daemon.port, multipart_upload("no-fd-left")) as first:
            refused_reply = first.recv(65536)
        for sock in holding[:8]:
            sock.close()
        while (count := open_descriptors(pid)) >= limit - 4:  # the daemon sees them closed
            assert time.monotonic() < deadline, count
            time.sleep(0.01)
        with raw(daemon.port, multipart_upload("no-fd-left")) as again:
            stored_reply = again.recv(65536)
    assert refused_reply.startswith(b"HTTP/1.1 503"), refused_reply
    assert b"\r\nRetry-After: 5\r\n" in refused_reply
    assert b"no file descriptors left" in refused_reply
    assert stored_reply.startswith(b"HTTP/1.1 202"), stored_reply
    lines = [json.loads(line) for line in daemon.output.splitlines() if line.startswith("{")]
    assert [line for line in lines if line["level"] == "error"] == []
    warnings = [line for line in lines if line["event"] == "requests_refused_out_of_descriptors"]
    assert len(warnings) == 1, warnings
    assert warnings[0]["open_files_limit"] == limit
    assert warnings[0]["refused_requests"] == 1
    assert "Too many open files" in warnings[0]["error"]
    assert "LimitNOFILE=" in warnings[0]["hint"]


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    except (ConnectionRefusedError, ConnectionResetError):  # reset: it was in the backlog as the socket closed
        return True
    return False


def test_a_body_still_arriving_at_a_stop_is_read_and_answered(tmp_path: Path) -> None:
    """SIGTERM while an upload is being handled: once the daemon has stopped listening, its body arrives and
    the upload is stored, 202 (before: aiohttp dropped the body and answered 408 after the body timeout)."""
    head, body = multipart_upload("e" * 32).split(b"\r\n\r\n", 1)
    with ingest(tmp_path, timeouts=FAST | {"body_timeout_seconds": 30}) as daemon:  # the stop's start is slow
        uploading = raw(daemon.port, head + b"\r\nExpect: 100-continue\r\n\r\n")
        assert uploading.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"  # the request is being handled
        daemon.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while not refused(daemon.port):  # the listening socket closes as the stop begins
            assert time.monotonic() < deadline, "still listening 30 s after SIGTERM"
        uploading.sendall(body)
        reply = read_until_closed(uploading)
    assert reply.startswith(b"HTTP/1.1 202"), reply
    assert '"event": "upload_stored"' in daemon.output


def test_a_body_that_stops_arriving_gets_408(tmp_path: Path) -> None:
    with ingest(tmp_path) as daemon:
        head = (
            b"POST /api/admin/v1/deletions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"client_id"'
        )
        reply = read_until_closed(raw(daemon.port, head))
    assert reply.startswith(b"HTTP/1.1 408")
    assert b"no part of the request body arrived for 0.8 seconds" in reply


def trickle(sock: socket.socket, data: bytes) -> bytes:
    """Send `data` a byte every 0.1 s until the server answers; its answer (read at once: the close that
    follows resets a connection whose client is still sending)."""
    for byte in data:
        sock.sendall(bytes([byte]))
        if select.select([sock], [], [], 0.1)[0]:
            break
    with sock:
        return sock.recv(65536)


def test_a_trickling_body_gets_408_from_the_server(tmp_path: Path, docs_dir: Path) -> None:
    """Item 23.8: a byte every 0.1 s never pauses for the body timeout, but averages under
    min_body_bytes_per_second (100): 408 within a second or so, not after the whole 10 kB."""
    with server(tmp_path, docs_dir) as daemon:
        head = (
            b"POST /v1/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Length: 10000\r\n\r\n"
        )
        reply = trickle(raw(daemon.port, head), b"x" * 10_000)
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert b"the request body averaged under 100 bytes/s" in reply


def test_the_header_and_keepalive_timeouts_are_each_their_own(tmp_path: Path) -> None:
    """Item 23.15: a connection that never finishes its head (header timeout, 0.4 s) is closed before an
    idle kept-alive one opened at the same time (keep-alive timeout, 1.6 s)."""
    with ingest(tmp_path) as daemon:
        idle = raw(daemon.port, b"GET /liveness HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        silent = raw(daemon.port, b"GET /liveness HTTP/1.1\r\nHost: 1")
        closed_first = select.select([idle, silent], [], [], 30)[0]
        assert closed_first == [silent]
        assert read_until_closed(silent) == b""
        assert read_until_closed(idle) == b""


def multipart_upload(request_id: str) -> bytes:
    archive = records_archive()
    boundary = b"b0undary"
    body = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="batch.tar.gz"\r\n'
        b"Content-Type: " + ARCHIVE_TYPE.encode() + b"\r\n\r\n" + archive + b"\r\n--" + boundary + b"--\r\n"
    )
    head = (
        b"POST /api/ingress/v1/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
        b"x-rh-insights-request-id: " + request_id.encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


def test_a_trickling_upload_gets_408_and_frees_its_slot(tmp_path: Path) -> None:
    """An upload sending a byte every 0.1 s (under min_bytes_per_second) is cut off; the only slot is free again."""
    uploads = {"tokens": [TOKEN], "max_concurrent": 1, "min_bytes_per_second": 1000}
    with ingest(tmp_path, uploads=uploads) as daemon:
        upload = multipart_upload("slow-batch")
        head_and_some = upload.index(b"\r\n\r\n") + 100
        reply = trickle(raw(daemon.port, upload[:head_and_some]), upload[head_and_some:])
        with raw(daemon.port, multipart_upload("fast-batch")) as fast:
            whole = fast.recv(65536)
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert b"averaged under 1000 bytes/s" in reply
    assert whole.startswith(b"HTTP/1.1 202"), whole


def request_with_key(port: int, method: bytes, path: bytes, key: bytes) -> bytes:
    head = method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer "
    return read_until_closed(raw(port, head + key + b"\r\nContent-Length: 0\r\n\r\n"))


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


NOT_UTF8_KEY = API_KEY.encode() + b"\xff\xfe"


def assert_one_warning_per_unreadable_key(output: str, count: int) -> None:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert not [line for line in lines if line["level"] == "error"], output[-3000:]
    unreadable = [line for line in lines if line["event"] == "authorization_unreadable"]
    assert len(unreadable) == count
    assert all(line["level"] == "warning" for line in unreadable)
    assert API_KEY[:20] not in output


def test_a_key_that_is_not_utf8_is_refused_by_the_server_with_401(tmp_path: Path, docs_dir: Path) -> None:
    """Item 23.4: a byte that is not UTF-8 in the key is a wrong key (401), not a 500 with a traceback."""
    with server(tmp_path, docs_dir) as daemon:
        reply = request_with_key(daemon.port, b"GET", b"/v1/conversations", NOT_UTF8_KEY)
        good = request_with_key(daemon.port, b"GET", b"/v1/conversations", API_KEY.encode())
    assert status_of(reply) == 401, reply
    assert b"not printable ASCII" in reply
    assert status_of(good) == 200
    assert_one_warning_per_unreadable_key(daemon.output, 1)


def test_a_key_that_is_not_utf8_counts_as_a_wrong_admin_key_at_the_ingest(tmp_path: Path) -> None:
    """Item 23.4: 401 on uploads and /admin; each counts against the wrong-key budget (burst 2, then 429)."""
    with ingest(tmp_path, admin_wrong_keys_burst=2) as daemon:
        upload = request_with_key(daemon.port, b"POST", b"/api/ingress/v1/upload", NOT_UTF8_KEY)
        admin = [request_with_key(daemon.port, b"GET", b"/api/admin/v1/uploads", NOT_UTF8_KEY) for _ in range(3)]
    assert status_of(upload) == 401, upload
    assert [status_of(reply) for reply in admin] == [401, 401, 429]
    assert_one_warning_per_unreadable_key(daemon.output, 3)
