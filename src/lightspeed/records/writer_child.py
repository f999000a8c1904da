"""The record writer process: atomic writes on its own threads, under its own GIL.

Run as `python -m lightspeed.records.writer_child THREADS`. Requests arrive on stdin,
replies leave on stdout, both framed (see `frames`). Keeping the fsync-bound
threads out of the server process means their GIL hand-offs (one per
syscall) no longer delay the event loop. When stdin closes, the writes in
progress finish and are answered before the process exits.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from lightspeed.records.frames import pack_reply, read_request
from lightspeed_common.atomic import GroupDirSync, write_atomic


def serve(threads: int, requests: BinaryIO, replies: BinaryIO) -> None:
    lock = threading.Lock()
    dir_sync = GroupDirSync()

    def write_one(request_id: int, path: str, data: bytes) -> None:
        error, reason = 0, ""
        try:
            write_atomic(Path(path), data, 0o640, dir_sync, owner=os.getpid())
        except OSError as exc:
            error, reason = exc.errno or 5, exc.strerror or str(exc)
        except Exception as exc:
            error, reason = 5, f"{type(exc).__name__}: {exc}"
        with lock:
            replies.write(pack_reply(request_id, error, reason))
            replies.flush()

    with ThreadPoolExecutor(threads, thread_name_prefix="record-writer") as pool:
        while (request := read_request(requests)) is not None:
            pool.submit(write_one, *request)


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    # Stop signals go to the whole unit (or terminal process group); the server
    # decides when writing ends by closing our stdin after its last request.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(threads, sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
