"""Helpers the benchmarks share: starting processes, waiting, reading figures."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http(port: int, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback only
        raw = resp.read()
        return json.loads(raw) if resp.headers.get_content_type() == "application/json" else raw.decode()


def wait_ready(port: int, proc: subprocess.Popen[bytes], path: str = "/readiness") -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            http(port, "GET", path)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("not ready in time")


def start_server(
    workdir: Path,
    docs: Path,
    port: int,
    answers: dict[str, Any] | None = None,
    sections: dict[str, Any] | None = None,
    *,
    env: dict[str, str] | None = None,
    wait: bool = True,
    **service: Any,
) -> subprocess.Popen[bytes]:
    """The real lightspeed server with the development-like config (`answers` merged into its section,
    `sections` added at the top, `env` added to the environment), logs to a file."""
    config = {
        "service": {"port": port, "state_dir": str(workdir / "state"), **service},
        "user_data_collection": {
            "feedback_enabled": True,
            "feedback_storage": str(workdir / "feedback"),
            "transcripts_enabled": True,
            "transcripts_storage": str(workdir / "transcripts"),
        },
        "answers": {"local": {"documents_dir": str(docs)}, **(answers or {})},
        "logging": {"format": "json", "level": "info"},
        **(sections or {}),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightspeed", "serve", "--config", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )
    if not wait:
        return proc
    try:
        wait_ready(port, proc)
        if service.get("workers", 1) > 1:  # one worker answering is not all of them ready
            deadline = time.monotonic() + 180
            while b'"workers_ready"' not in (workdir / "server.log").read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the workers did not all become ready")
                time.sleep(0.2)
    except BaseException:
        stop(proc)  # a server that did not get ready is not left running
        raise
    return proc


def start_noop_server(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "noop_server.py"), str(port)])
    wait_ready(port, proc, "/liveness")
    return proc


def rss_mb(pid: int) -> tuple[float, float]:
    """Current and peak resident memory of a process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    current = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return current / 1024, peak / 1024


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def data_volume(size: str = "2G") -> Iterator[Path]:
    """A fresh ext4 file system for record data, as an operator's data volume would be.

    This machine's root file system is mounted with `resv_strict`, which makes
    every file creation cost about 0.9 ms of kernel CPU; the benchmarks print
    figures on both. Needs root (losetup via mount -o loop).
    """
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    image, mountpoint = out / "ext4.img", out / "volume"
    mountpoint.mkdir(exist_ok=True)
    subprocess.run(["truncate", "-s", size, str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-i", "4096", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)
        image.unlink(missing_ok=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def timed(call: Callable[[int], object], count: int) -> list[float]:
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        call(i)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies
