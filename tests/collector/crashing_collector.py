"""`python -m tests.collector.crashing_collector STEP --config FILE [--once]`: the collector, ending the process
at the delivery step STEP (`after_claim`, `after_package`, `after_upload`, `after_journal`,
`after_cleanup`) as a crash would: no cleanup, no flush, exit status FAULT_EXIT. STEP `never` runs to
the end.

It says on standard output where it is, for a test that kills it at a moment of its own choosing:
`started` once its imports are done (the collector's work begins), then `checkpoint STEP` at each step
boundary it passes.

The crash hook is passed to the Collector here; production code has none.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from collector.daemon import Collector
from lightspeed_common.config import load_config
from lightspeed_common.logs import configure_logging

FAULT_EXIT = 99


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("step")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args()
    config = load_config(args.config)

    def crash_at(step: str) -> None:
        print(f"checkpoint {step}", flush=True)
        if step == args.step:
            os._exit(FAULT_EXIT)

    configure_logging(config.logging.level, config.logging.format, identifier="lightspeed-collector")
    print("started", flush=True)
    return Collector(config, once=args.once, checkpoint=crash_at).run()


if __name__ == "__main__":
    sys.exit(main())
