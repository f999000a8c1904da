"""The worker supervisor (service.workers) with two small worker programs: what it does when one exits.

The workers here are a few lines of Python that speak the notify protocol, so each behaviour is
shown at once instead of behind a model load (issue 23, item 12).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable

import pytest

from lightspeed.api.workers import Supervisor
from lightspeed_common.errors import EXIT_CANTCREAT, EXIT_CONFIG
from lightspeed_common.notify import Notifier
from tests.support import until

# argv[1]: what this worker does: "ready" (then waits for SIGTERM), "exit:N" (exits N before being ready),
# "ready-then-exit:N" (ready, then exits N).
WORKER = """
import os, signal, socket, sys, time
mode = sys.argv[1]
if mode.startswith("exit:"):
    sys.exit(int(mode.split(":")[1]))
address = os.environ["NOTIFY_SOCKET"].replace("@", "\\0", 1)
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
    notify.sendto(b"READY=1", address)
if mode.startswith("ready-then-exit:"):
    time.sleep(0.2)
    sys.exit(int(mode.split(":")[1]))
signal.sigwait([signal.SIGTERM])
"""


def supervisor(modes: Callable[[int, bool], str]) -> Supervisor:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()

    def command(index: int, first: bool) -> list[str]:
        return [sys.executable, "-c", WORKER, modes(index, first)]

    return Supervisor(command, sock, 2, Notifier(None), stop_timeout=5)


@pytest.mark.parametrize(("code", "expected"), [(EXIT_CONFIG, EXIT_CONFIG), (EXIT_CANTCREAT, EXIT_CANTCREAT), (3, 1)])
async def test_a_worker_failing_to_start_with_a_configuration_or_storage_error_stops_all_with_its_code(
    code: int, expected: int
) -> None:
    """With workers: 2, one worker's exit 78 or 73 before it is ready is the main process's exit code (systemd
    does not restart those: a restart cannot fix a bad configuration); any other failure is 1."""
    running = supervisor(lambda index, first: f"exit:{code}" if index == 1 else "ready")
    try:
        assert await asyncio.wait_for(running.run(), 60) == expected
    finally:
        running.sock.close()
    assert all(worker.process.returncode is not None for worker in running.workers.values())


async def test_a_worker_that_exits_0_is_replaced() -> None:
    """With workers: 2, a worker that exits 0 on its own (not asked to) is started again, as any other exit."""
    running = supervisor(lambda index, first: "ready-then-exit:0" if index == 0 and first else "ready")
    task = asyncio.create_task(running.run())
    try:

        async def replaced_and_ready() -> bool:
            worker = running.workers.get(0)
            return running.replaced == 1 and worker is not None and worker.ready.is_set()

        await until(replaced_and_ready, "worker 0 replaced and ready again")
        assert all(worker.process.returncode is None for worker in running.workers.values())
    finally:
        running.stop()
        code = await asyncio.wait_for(task, 60)
        running.sock.close()
    assert code == 0
