"""A private CA with server and client certificates (trustme), and a real CONNECT proxy (proxy.py)
on 127.0.0.1, for the outbound TLS and proxy tests."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.fake_llm import free_port


@dataclass(frozen=True)
class PrivateCA:
    ca: trustme.CA
    ca_file: Path
    client_cert: Path
    client_key: Path

    def server_context(
        self, *, client_certificates: bool = False, max_version: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        """A server context for 127.0.0.1 and localhost; asking for a client certificate from this CA."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        if client_certificates:
            self.ca.configure_trust(context)
            context.verify_mode = ssl.CERT_REQUIRED
        if max_version is not None:
            context.maximum_version = max_version
        return context


@pytest.fixture
def private_ca(tmp_path: Path) -> PrivateCA:
    ca = trustme.CA()
    client = ca.issue_cert("lightspeed-client@example.com")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    return PrivateCA(ca, tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key")


@dataclass
class Proxy:
    url: str
    log: Path

    def connects(self) -> list[str]:
        """The CONNECT lines of the access log (written when a tunnel closes)."""
        return [line for line in self.log.read_text(errors="replace").splitlines() if " - CONNECT " in line]

    def wait_for_connect(self, target: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not any(f"CONNECT {target}" in line for line in self.connects()):
            assert time.monotonic() < deadline, f"no CONNECT {target} in the proxy's log: {self.connects()}"
            time.sleep(0.05)


@pytest.fixture
def connect_proxy(tmp_path: Path) -> Iterator[Proxy]:
    """proxy.py on 127.0.0.1 with Basic credentials `lightspeed`/`proxy-secret`."""
    port = free_port()
    log = tmp_path / "proxy.log"
    with log.open("w") as out:
        arguments = ["--hostname", "127.0.0.1", "--port", str(port), "--num-workers", "1", "--num-acceptors", "1"]
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", *arguments, "--basic-auth", "lightspeed:proxy-secret"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "proxy.py did not start listening"
                time.sleep(0.05)
        yield Proxy(f"http://127.0.0.1:{port}", log)
    finally:
        process.terminate()
        process.wait(timeout=30)
