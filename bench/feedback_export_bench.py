"""The feedback export (issue 27): 100,000 feedback records streamed as CSV and as JSON Lines by a real
lightspeed-ingest (SQLite, on an ext4 data volume), beside a one-row export from the same process.

Figures: rows per second of each export, and the ingest's peak resident memory after the one-row export
(the baseline) and after each full one. Target: the peak grows by less than 32 MB: the export walks the
index a thousand rows at a time and never holds the set.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from common import data_volume, free_port, rss_mb, stop  # noqa: E402
from ingest.sqlite_storage import SQLiteStorage  # noqa: E402
from ingest.storage import FeedbackInfo, RecordInfo, UploadInfo  # noqa: E402
from ingest_bench import start_ingest  # noqa: E402

ROWS = 100_000
PER_UPLOAD = 5_000
TARGET_MB = 32.0
ADMIN = "bench-admin-key"


def seed(state: Path) -> None:
    """ROWS feedback records indexed as uploads would index them (the archives themselves are not needed)."""
    storage = SQLiteStorage(state / "ingest.sqlite3")
    try:
        for upload in range(ROWS // PER_UPLOAD):
            records = []
            for n in range(upload * PER_UPLOAD, (upload + 1) * PER_UPLOAD):
                at = f"2026-11-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z"
                record = {
                    "user_id": f"{n % 5000:064x}",
                    "timestamp": at,
                    "conversation_id": f"c-{n}",
                    "user_question": f"How do I configure thing {n}?",
                    "llm_response": "Set the key in the config file and restart the service. " * 4,
                    "sentiment": 1 if n % 3 else -1,
                    "user_feedback": f"feedback number {n}",
                    "categories": ["incorrect"] if n % 3 == 0 else None,
                }
                text = json.dumps(record)
                info = FeedbackInfo(
                    at, record["sentiment"], ("incorrect",) if n % 3 == 0 else (), record["user_feedback"], text
                )  # type: ignore[arg-type]
                records.append(RecordInfo(f"feedback/{n}.json", "feedback", f"{n:064x}", f"c-{n}", at, None, info))
            name = f"batch-{upload}"
            upload_info = UploadInfo(name, datetime.now(UTC), "lightspeed", "periodic", f"x/{name}.tar.gz", 1, "0" * 64)
            storage.add_upload(upload_info, records, lambda: None)
    finally:
        storage.close()


def export(port: int, query: str) -> tuple[int, float]:
    """Lines received and seconds."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/admin/v1/feedback?{query}")
    request.add_header("Authorization", f"Bearer {ADMIN}")
    started = time.perf_counter()
    lines = 0
    with urllib.request.urlopen(request, timeout=600) as resp:  # noqa: S310 - loopback only
        for _ in resp:
            lines += 1
    return lines, time.perf_counter() - started


def main() -> bool:
    print(f"== feedback export: {ROWS:,} feedback records as CSV and JSON Lines from a real ingest")
    ok = True
    with data_volume("2G") as volume:
        state = volume / "ingest"
        state.mkdir()
        seed(state)
        port = free_port()
        proc = start_ingest(volume, "ingest", port, extra={"admin_key": ADMIN})
        try:
            export(port, "format=csv&since=2026-11-01&until=2026-11-01&q=number%2028")  # one row
            baseline = rss_mb(proc.pid)[1]
            print(f"  ingest peak RSS after a one-row export: {baseline:.0f} MB (baseline)")
            for kind in ("csv", "jsonl"):
                lines, seconds = export(port, f"format={kind}")
                peak = rss_mb(proc.pid)[1]
                rows = lines - (kind == "csv")  # the header line
                good = rows == ROWS and peak - baseline < TARGET_MB
                ok = ok and good
                print(
                    f"  {kind:<5}: {rows:,} rows in {seconds:.2f} s ({rows / seconds:,.0f} rows/s); peak RSS "
                    f"{peak:.0f} MB (+{peak - baseline:.0f} MB, target < +{TARGET_MB:.0f}) {'PASS' if good else 'FAIL'}"
                )
        finally:
            stop(proc)
    print(f"  feedback export: {'PASS' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    main()
