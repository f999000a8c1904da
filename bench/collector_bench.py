"""Draining a backlog: lightspeed-collector --once against the raw pipeline on the same tree.

Backlogs of 10,000 and 100,000 records shaped like lightspeed-stack's (about
1.8 KB feedback, 2.4 KB transcripts under 40 users), drained to the same
local ingress. The raw pipeline is `tar czf`, `curl -F file=@...`, and
`find -delete` of the files, then of the folders they emptied (the collector
removes those too). Targets (issue 28.2): at most 1.5x the raw pipeline's time;
peak resident memory under 120 MB at both sizes. (Memory follows the batch, not
the backlog: 10,000 records are one batch, 100,000 are seven of up to 20,000
files or 50 MB, one packaged while another uploads, so the larger run's peak is
about 20 MB higher, and stays there for any larger backlog.) Then the
idle cost: the daemon with everything delivered and nothing new, under 1% of
one core. The ingress keeps what it receives on another file system, as a
real one (another machine) would: the collector's syncfs of the records'
volume must not also flush the ingress's copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import REPO, data_volume, free_port, stop, wait_ready

USERS = 40


def generate(root: Path, count: int, rng: random.Random) -> int:
    """Write `count` records (30% feedback, 70% transcripts); returns the bytes written."""
    feedback, transcripts = root / "feedback", root / "transcripts"
    feedback.mkdir(parents=True)
    total = 0
    for i in range(count):
        conversation_number = i // 5  # about five turns per conversation, each conversation one user's
        user = hashlib.sha256(f"user-{conversation_number % USERS}".encode()).hexdigest()
        if i % 10 < 3:
            record = {
                "user_id": user,
                "timestamp": "2026-11-22 10:00:00+00:00",
                "conversation_id": f"c{i}",
                "user_question": "q" * 300,
                "llm_response": "a" * 1300,
                "sentiment": 1,
                "user_feedback": "f" * 60,
                "categories": None,
            }
            path = feedback / f"{i:08d}.json"
        else:
            conversation = f"conv-{conversation_number:08d}"
            record = {
                "metadata": {
                    "provider": "local",
                    "model": "extractive",
                    "user_id": user,
                    "conversation_id": conversation,
                    "timestamp": "2026-11-22T10:00:00+00:00",
                },
                "redacted_query": "q" * 200,
                "query_is_valid": True,
                "llm_response": "a" * 1700,
                "rag_chunks": [{"content": "c" * 250, "source": "doc.md", "score": 0.5}],
                "truncated": False,
                "attachments": [],
                "tool_calls": [],
                "tool_results": [],
            }
            path = transcripts / user / conversation / f"{i:08d}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(record).encode()
        path.write_bytes(data)
        total += len(data)
    return total


# Runs the command for `run_measured` from a fresh small process. A child's peak resident memory
# (ru_maxrss) counts the pages of the process that forked it, until its exec: forked from `make bench`,
# which has loaded torch by then (the start-up bench builds an index in-process), the collector showed
# 804 MB. The launcher times the command itself, so its own start is not counted.
LAUNCHER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
seconds = time.perf_counter() - started
print(json.dumps([seconds, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime]))
"""


def run_measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int, float]:
    """Wall seconds, peak resident MB, exit code and CPU seconds (user + system) of one command."""
    launched = subprocess.run([sys.executable, "-c", LAUNCHER, *command], env=env, capture_output=True, check=True)
    seconds, peak, code, cpu = json.loads(launched.stdout)
    return float(seconds), float(peak), int(code), float(cpu)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def raw_pipeline(root: Path, url: str) -> tuple[float, float, float]:
    """Wall seconds of the raw pipeline, the same with the folders it emptied removed, and the CPU seconds
    (its processes' user + system) of the whole.

    The collector removes the user and conversation folders a batch emptied (docs/collector.md: a folder
    named by a user's hash must not outlive their records, and the storage tree must not grow with every
    conversation ever held). `find -delete` of the files alone leaves them: 14,000 at 100,000 records,
    whose removal is kernel work of the same kind as the files' (1.6-2.7 s here).
    """
    cpu = children_cpu()
    started = time.perf_counter()
    archive = root / "batch.tar.gz"
    subprocess.run(["tar", "czf", str(archive), "-C", str(root), "feedback", "transcripts"], check=True)
    subprocess.run(
        [
            "curl",
            "-sf",
            "-o",
            "/dev/null",
            "-F",
            f"file=@{archive};type=application/vnd.redhat.lightspeed.periodic+tar",
            url,
        ],
        check=True,
    )
    subprocess.run(
        ["find", str(root / "feedback"), str(root / "transcripts"), "-name", "*.json", "-delete"], check=True
    )
    archive.unlink()
    files_only = time.perf_counter() - started
    subprocess.run(["find", str(root / "transcripts"), "-mindepth", "1", "-type", "d", "-empty", "-delete"], check=True)
    return files_only, time.perf_counter() - started, children_cpu() - cpu


def collector_config(root: Path, url: str, interval: int = 7200) -> Path:
    config = {
        "service": {"state_dir": str(root / "state")},
        "user_data_collection": {
            "feedback_enabled": True,
            "feedback_storage": str(root / "feedback"),
            "transcripts_enabled": True,
            "transcripts_storage": str(root / "transcripts"),
            "data_collector": {
                "enabled": True,
                "ingress_server_url": url,
                "ingress_server_auth_token": "bench",
                "ingress_content_service_name": "lightspeed",
                "collection_interval": interval,
            },
        },
        "logging": {"format": "json", "level": "warning"},
    }
    path = root / "collector.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def idle_cost(root: Path, url: str, seconds: float = 20.0) -> float:
    """CPU share of one core used by the daemon with nothing to do (rescanning every 5 s)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--config", str(collector_config(root, url, interval=5))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(3)  # start-up and the first (empty) flush
    before = cpu_seconds(proc.pid)
    time.sleep(seconds)
    used = cpu_seconds(proc.pid) - before
    stop(proc)  # type: ignore[arg-type]
    return used / seconds * 100


def main() -> bool:
    rng = random.Random(1)
    print("== collector: drain a backlog with --once (cleanup on) vs tar czf + curl -F + find -delete")
    ok = True
    with (
        data_volume("4G") as volume,
        tempfile.TemporaryDirectory(dir=volume) as tmp,
        tempfile.TemporaryDirectory(prefix="lightspeed-sink-") as received,
    ):
        work = Path(tmp)
        port = free_port()
        ingress = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "sink_ingress.py"),
                "--port",
                str(port),
                "--store",
                received,
            ],
            stdout=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}/api/ingress/v1/upload"
        try:
            wait_ready(port, ingress, "/liveness")
            for count in (10_000, 100_000):
                raw_root, our_root = work / f"raw-{count}", work / f"ours-{count}"
                size = generate(raw_root, count, rng)
                generate(our_root, count, rng)
                # The server fsyncs every record it writes: start both sides from a clean page cache.
                subprocess.run(["sync"], check=True)
                raw_files, raw, raw_cpu = raw_pipeline(raw_root, url)
                # What the raw pipeline left unwritten (its deletions) is not the collector's to flush.
                subprocess.run(["sync"], check=True)
                seconds, peak, code, cpu = run_measured(
                    [
                        sys.executable,
                        "-m",
                        "collector",
                        "run",
                        "--once",
                        "--config",
                        str(collector_config(our_root, url)),
                    ]
                )
                left = sum(1 for p in our_root.rglob("*.json") if p.name != "status.json")
                folders = sum(1 for p in (our_root / "transcripts").rglob("*") if p.is_dir())
                ratio = seconds / raw
                print(
                    f"  {count:>7} records ({size / 1e6:6.1f} MB): raw pipeline {raw:6.2f} s (CPU {raw_cpu:5.2f} s;"
                    f" {raw_files:.2f} s before the emptied folders go) |"
                    f" lightspeed-collector {seconds:6.2f} s (CPU {cpu:5.2f} s; {ratio:.2f}x, target <= 1.5x),"
                    f" peak RSS {peak:5.1f} MB (target < 120), exit {code}, records left {left},"
                    f" folders left {folders}"
                )
                ok = ok and ratio <= 1.5 and peak < 120 and code == 0 and left == 0 and folders == 0
            idle = idle_cost(work / "ours-100000", url)
            print(f"  idle with 100,000 delivered, rescanning every 5 s: {idle:.2f}% of one core (target < 1%)")
            ok = ok and idle < 1
        finally:
            stop(ingress)  # type: ignore[arg-type]
    print(f"  {'PASS' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    main()
