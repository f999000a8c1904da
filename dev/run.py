"""`make run`: the whole pipeline on this machine, from one config file.

Starts `lightspeed-ingest` (when the collector's ingress URL or the telemetry
registry URL points at its port on this machine), `lightspeed-collector` and
`lightspeed serve` as child processes, all with the same config file, and
prints the API's address once it answers. Ctrl-C / SIGTERM, or any child
ending, stops them in dependency order: the server first (no new records),
then the collector (its final flush still reaches the ingest), then the
ingest. The children run in their own process group, so a terminal's Ctrl-C
reaches only this process, which then stops them in that order.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from lightspeed_common.config import load_config
from lightspeed_common.errors import ConfigError

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


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own server on this machine
            return True
    except OSError:
        return False


def api_base(host: str, port: int) -> str:
    """Where a browser or curl on this machine reaches the API."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # noqa: S104 - a bind address


def _announce(base: str) -> None:
    print(
        f"\nlightspeed is ready: {base}  (settings page: {base}/settings; Ctrl-C stops everything)\n"
        f"  try: curl -s {base}/v1/query -H 'Content-Type: application/json' "
        """-d '{"query": "How do I enable feedback?"}'\n""",
        flush=True,
    )


def stop_in_order(children: list[subprocess.Popen[bytes]], grace: float = 30.0) -> None:
    """SIGTERM each child and wait for it, last started first: server, collector, ingest."""
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python dev/run.py")
    parser.add_argument("--config", type=Path, default=Path("config/lightspeed.yaml"))
    args = parser.parse_args()
    try:
        config = load_config(args.config)
        to_start = commands(args.config)
    except ConfigError as exc:
        print(f"{exc}", file=sys.stderr)
        return 78
    # process_group=0: Ctrl-C in the terminal reaches this process only; the children stop in order.
    children = [subprocess.Popen(command, process_group=0) for command in to_start]  # noqa: S603 - our modules
    stopping = False

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    base = api_base(config.service.host, config.service.port)
    announced = False
    while not stopping and all(child.poll() is None for child in children):
        if not announced and _answers(f"{base}/readiness"):
            _announce(base)
            announced = True
        time.sleep(0.2)
    stop_in_order(children)
    return children[-1].returncode or 0


if __name__ == "__main__":
    sys.exit(main())
