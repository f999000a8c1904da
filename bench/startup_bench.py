"""Start-up cost of each daemon's command line: `<command> --help`, beside `python -c pass`;
and the server's time from `lightspeed serve` to ready over this repository's docs/.

The collector and the ingest must not pay for the server's embedding stack
(torch, sentence-transformers): their --help stays near the interpreter's own
start-up. Median of several runs, each a fresh process.

`lightspeed serve` to ready (`/readiness` answering): once with an empty state
directory, so the answer index is built and cached, then three times on the
same state directory, reading it from the cache (the median is the figure:
issue 16 asks that it be no worse than before the cache, when every start
embedded the documents).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, free_port, start_server, stop

BIN = Path(sys.executable).parent
RUNS = 7


def _median_seconds(command: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _serve_to_ready(workdir: Path) -> float:
    started = time.perf_counter()
    server = start_server(workdir, REPO / "docs", free_port())
    seconds = time.perf_counter() - started
    stop(server)
    return seconds


def serve_to_ready() -> tuple[float, float]:
    """(empty cache, warm cache) seconds from `lightspeed serve` to ready over docs/."""
    with tempfile.TemporaryDirectory() as tmp:
        cold = _serve_to_ready(Path(tmp))
        warm = statistics.median(_serve_to_ready(Path(tmp)) for _ in range(3))
    return cold, warm


def main() -> bool:
    print(f"== start-up: each daemon's --help, median of {RUNS} fresh processes")
    baseline = _median_seconds([sys.executable, "-c", "pass"])
    print(f"  baseline python -c pass        : {baseline * 1000:6.0f} ms")
    for name in ("lightspeed", "lightspeed-collector", "lightspeed-ingest"):
        seconds = _median_seconds([str(BIN / name), "--help"])
        print(f"  {name + ' --help':<31}: {seconds * 1000:6.0f} ms  ({seconds / baseline:4.1f}x the interpreter)")
    cold, warm = serve_to_ready()
    print(f"  lightspeed serve to ready over docs/: {warm:5.2f} s with the index cache warm (median of 3),")
    print(f"    {cold:5.2f} s with an empty state directory (the index built and cached)")
    return warm < cold


if __name__ == "__main__":
    main()
