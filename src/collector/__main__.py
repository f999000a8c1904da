"""`lightspeed-collector --config FILE`.

The delivery daemon itself is issue 3. This entry point already reads the
shared configuration and honours `data_collector.enabled: false`: it says so
in one line and exits 0 without touching anything.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lightspeed.config import load_config
from lightspeed.errors import EXIT_CONFIG, ConfigError

EXIT_UNAVAILABLE = 69


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lightspeed-collector", description="Ship lightspeed records to ingress.")
    parser.add_argument("--config", type=Path, default=Path("/etc/lightspeed/lightspeed.yaml"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"lightspeed-collector: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not config.user_data_collection.data_collector.enabled:
        print("lightspeed-collector: data_collector.enabled is false in the config; nothing to do")
        return 0
    print("lightspeed-collector: uploading is not available in this version", file=sys.stderr)
    return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
