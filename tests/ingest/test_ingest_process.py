"""`lightspeed-ingest` as a process: HTTPS, a clean stop, and the exit codes an operator sees."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.fake_llm import free_port


def write_config(tmp_path: Path, **ingest: Any) -> Path:
    path = tmp_path / "ingest.yaml"
    path.write_text(
        yaml.safe_dump({"ingest": {"state_dir": str(tmp_path / "state"), **ingest}, "logging": {"format": "json"}})
    )
    return path


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_it_serves_https_and_stops_cleanly(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    config = write_config(tmp_path, port=port, tls_cert_file=str(cert), tls_key_file=str(key))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    context = ssl.create_default_context(cafile=str(cert))
    body = None
    try:
        deadline = time.monotonic() + 30
        while body is None and time.monotonic() < deadline:
            assert proc.poll() is None
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/readiness", context=context, timeout=5) as resp:
                    body = json.loads(resp.read())
            except OSError:
                time.sleep(0.2)
        plain_refused = False
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readiness", timeout=5)
        except OSError:
            plain_refused = True
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert body == {"ready": True, "reason": "database open"}
    assert plain_refused
    assert proc.returncode == 0, output
    assert '"tls": true' in output
    assert "ingest_stopped" in output


def test_configuration_errors_exit_78_and_name_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, no_such_key=1)
    checked = run("check-config", "--config", str(config))
    served = run("serve", "--config", str(config))
    only_cert = run("serve", "--config", str(write_config(tmp_path, tls_cert_file="/nonexistent.pem")))
    cert_missing = run(
        "serve",
        "--config",
        str(write_config(tmp_path, tls_cert_file="/nonexistent.pem", tls_key_file="/nonexistent.key")),
    )

    assert checked.returncode == 78
    assert "unknown key 'ingest.no_such_key'" in checked.stderr
    assert served.returncode == 78
    assert "ingest.no_such_key" in served.stdout
    assert only_cert.returncode == 78
    assert "tls_cert_file and tls_key_file go together" in only_cert.stdout
    assert cert_missing.returncode == 78
    assert "cannot load the certificate or key" in cert_missing.stdout
    # The production config requires a telemetry key: without one it fails, with the credential it passes.
    unkeyed = run("check-config", "--config", str(REPO_CONFIG), env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert unkeyed.returncode == 78
    assert "ingest.telemetry.require_api_key" in unkeyed.stderr
    (tmp_path / "lightspeed-ingest-telemetry-keys").write_text("a-shared-telemetry-key\n")
    keyed = run("check-config", "--config", str(REPO_CONFIG), env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert keyed.returncode == 0, keyed.stderr


def test_an_unusable_state_directory_exits_73(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the directory should be")
    result = run("serve", "--config", str(write_config(tmp_path, port=free_port())))
    assert result.returncode == 73
    assert "storage_unusable" in result.stdout


REPO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "ingest.production.yaml"
