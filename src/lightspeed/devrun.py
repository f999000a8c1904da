"""`make run`: the whole pipeline on this machine, from one config file.

Starts `lightspeed-ingest` (when the collector's ingress URL or the telemetry
registry URL points at its port on this machine), `lightspeed-collector` and
`lightspeed serve` as child processes, all with the same config file,
passes Ctrl-C / SIGTERM on to them and stops them all when one of them ends.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from lightspeed.config import load_config
from lightspeed.errors import ConfigError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def commands(config_path: Path) -> list[list[str]]:
    config = load_config(config_path)
    python = sys.executable
    started = []
    collector = config.user_data_collection.data_collector
    destinations = [
        str(collector.ingress_server_url or "") if collector.enabled else "",
        str(config.telemetry.registry_url or ""),
    ]
    for url in map(urlsplit, destinations):
        if url.hostname in LOOPBACK and url.port == config.ingest.port:
            started.append([python, "-m", "ingest", "serve", "--config", str(config_path)])
            break
    started.append([python, "-m", "collector", "run", "--config", str(config_path)])
    started.append([python, "-m", "lightspeed", "serve", "--config", str(config_path)])
    return started


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lightspeed.devrun")
    parser.add_argument("--config", type=Path, default=Path("config/lightspeed.yaml"))
    args = parser.parse_args()
    try:
        to_start = commands(args.config)
    except ConfigError as exc:
        print(f"{exc}", file=sys.stderr)
        return 78
    children = [subprocess.Popen(command) for command in to_start]  # noqa: S603 - our own modules
    signalled = False

    def forward(signum: int, _: FrameType | None) -> None:
        # One signal per stop: a second one would cut short the graceful shutdown it started.
        nonlocal signalled
        if signalled:
            return
        signalled = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    forward(signal.SIGTERM, None)  # one of them ended on its own: stop the others
    deadline = time.monotonic() + 30
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    return children[-1].returncode or 0


if __name__ == "__main__":
    sys.exit(main())
