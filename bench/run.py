"""`make bench`: every benchmark, each printing its figure beside a same-run baseline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import answers_eval
import attack_bench
import auth_bench
import collector_bench
import conversations_bench
import erasure_bench
import feedback_bench
import feedback_export_bench
import handmade_bench
import ingest_bench
import insights_bench
import install_bench
import models_bench
import query_bench
import redaction_bench
import startup_bench
import telemetry_bench
import tracing_bench

if os.geteuid() != 0:
    sys.exit("make bench needs root: it mounts a loop ext4 volume for the record data")
results = {
    "startup": startup_bench.main(),
    "redaction": redaction_bench.main(),
    "auth": auth_bench.main(),
    "feedback": feedback_bench.main(),
    "collector": collector_bench.main(),
    "telemetry": telemetry_bench.main(),
    "query": query_bench.main(),
    "tracing": tracing_bench.main(),
    "answers": answers_eval.main(),
    "models": models_bench.main(),
    "ingest": ingest_bench.main(),
    "conversations": conversations_bench.main(),
    "erasure": erasure_bench.main(),
    "feedback export": feedback_export_bench.main(),
    "insights": insights_bench.main(),
    "hand-made parts": handmade_bench.main(),
    "attacks": attack_bench.main(),
    "install": install_bench.main(),
}
print("== summary: " + ", ".join(f"{name} {'PASS' if ok else 'FAIL'}" for name, ok in results.items()))
