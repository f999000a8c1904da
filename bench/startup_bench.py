"""Start-up cost of each daemon's command line: `<command> --help`, beside `python -c pass`.

The collector and the ingest must not pay for the server's embedding stack
(torch, sentence-transformers): their --help stays near the interpreter's own
start-up. Median of several runs, each a fresh process.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
RUNS = 7


def _median_seconds(command: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> bool:
    print(f"== start-up: each daemon's --help, median of {RUNS} fresh processes")
    baseline = _median_seconds([sys.executable, "-c", "pass"])
    print(f"  baseline python -c pass        : {baseline * 1000:6.0f} ms")
    for name in ("lightspeed", "lightspeed-collector", "lightspeed-ingest"):
        seconds = _median_seconds([str(BIN / name), "--help"])
        print(f"  {name + ' --help':<31}: {seconds * 1000:6.0f} ms  ({seconds / baseline:4.1f}x the interpreter)")
    return True


if __name__ == "__main__":
    main()
