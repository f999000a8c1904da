"""Log lines as journald entries: priority from the level, every key a field, over the native protocol."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from pathlib import Path

PROGRAM = """
import io, sys, structlog
from lightspeed_common.logs import configure_logging
writer = configure_logging("info", "auto", stream=io.StringIO(), journal_socket=sys.argv[1], identifier="lightspeed")
log = structlog.get_logger("t")
log.info("request_handled", request_id="r-1", route="/v1/query", status=200, duration_ms=1.5)
log.warning("upload_retry", attempt=2, error="503")
try:
    raise ValueError("boom")
except ValueError:
    log.exception("request_failed", route="/v1/feedback")
writer.close()
"""


def parse(datagram: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        line, _, after = rest.partition(b"\n")
        if b"=" in line:
            name, _, value = line.partition(b"=")
            fields[name.decode()] = value.decode()
            rest = after
        else:  # the binary-safe form: NAME\n<u64 length><data>\n
            (length,) = struct.unpack("<Q", after[:8])
            fields[line.decode()] = after[8 : 8 + length].decode()
            rest = after[8 + length + 1 :]
    return fields


def test_each_line_becomes_a_journal_entry_with_priority_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "journal.sock"
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(str(path))
    journal.settimeout(10)
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    entries = [parse(journal.recv(65536)) for _ in range(3)]
    journal.close()

    assert result.returncode == 0, result.stderr
    handled, retry, failed = entries
    assert handled["PRIORITY"] == "6"
    assert handled["EVENT"] == "request_handled"
    assert handled["REQUEST_ID"] == "r-1"
    assert handled["STATUS"] == "200"
    assert handled["SYSLOG_IDENTIFIER"] == "lightspeed"
    assert handled["MESSAGE"].startswith("request_handled ")
    assert "route=/v1/query" in handled["MESSAGE"]
    assert retry["PRIORITY"] == "4"
    assert retry["ATTEMPT"] == "2"
    assert failed["PRIORITY"] == "3"
    assert "ValueError: boom" in failed["EXCEPTION"]
    assert "\n" in failed["EXCEPTION"]  # a traceback survives in the binary-safe encoding
    assert result.stdout == ""  # nothing doubled on stdout
