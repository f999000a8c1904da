"""Install only what a host runs (issue 28.5): the base package beside the full one, same run.

A fresh venv each, `pip install <checkout>` (the collector and the ingest) and
`pip install '<checkout>[server]'` (everything, as `make install` without the
dev tools). pip takes the packages from its cache or the registry, the same way
for both. Target: the base venv under 150 MB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO

LIMIT_MB = 150


def install(venv: Path, spec: str) -> tuple[float, float]:
    """Seconds to create the venv and install `spec` into it, and its size in MB."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", spec], check=True, env=env)
    seconds = time.perf_counter() - started
    size = sum(p.lstat().st_size for p in venv.rglob("*") if not p.is_dir()) / 1e6
    return seconds, size


def main() -> bool:
    print("== install: a fresh venv with the base package, beside one with the server extra")
    with tempfile.TemporaryDirectory() as tmp:
        base_s, base_mb = install(Path(tmp) / "base", str(REPO))
        full_s, full_mb = install(Path(tmp) / "full", f"{REPO}[server]")
    ok = base_mb < LIMIT_MB
    print(f"  baseline lightspeed[server] (everything): {full_s:6.1f} s  {full_mb:7.0f} MB")
    print(
        f"  lightspeed (collector and ingest)       : {base_s:6.1f} s  {base_mb:7.0f} MB"
        f"  ({base_mb / full_mb:.2f}x the size, target < {LIMIT_MB} MB)  -> {'PASS' if ok else 'FAIL'}"
    )
    return ok


if __name__ == "__main__":
    main()
