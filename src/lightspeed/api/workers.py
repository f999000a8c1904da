"""Several worker processes behind one listening socket, supervised by one main process.

The main process binds the socket (SO_REUSEADDR, SO_REUSEPORT) and starts `count`
workers, each a fresh interpreter running the same command with the socket
inherited (`LISTEN_FD_ENV` names its descriptor). All workers accept from that
one socket: a connection waits in one queue until some worker takes it, so a
worker that dies loses only the connections it had accepted, not a queue of
its own (which separate SO_REUSEPORT sockets, one per worker, would).

Each worker speaks the systemd notify protocol to a private socket of the main
process (its `NOTIFY_SOCKET`): READY=1 when it serves, WATCHDOG=1 while its
event loop runs. The main process tells systemd READY=1 once every worker is
ready, pings systemd's watchdog, and replaces a worker that exits or stops
pinging (SIGKILL, then a new one; after repeated quick crashes, with a growing
pause). SIGTERM or SIGINT: STOPPING=1, every worker gets SIGTERM and drains its
requests and streams (`service.shutdown_timeout_seconds`), then the main
process exits. A worker that fails to start with a configuration or storage
error (78, 73) stops them all with that exit code: restarting cannot fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from lightspeed_common.errors import EXIT_CANTCREAT, EXIT_CONFIG
from lightspeed_common.notify import Notifier, watchdog_running

log = structlog.get_logger(__name__)
LISTEN_FD_ENV = "LIGHTSPEED_LISTEN_FD"
WORKER_ENV = "LIGHTSPEED_WORKER"  # the worker's index, 0 .. count-1
SUPERVISOR_ENV = "LIGHTSPEED_SUPERVISOR_PID"
# "1" for the first workers: they answer /liveness and 503s on the shared socket while they load. A
# replacement does not accept before it is ready: its siblings serve meanwhile.
EARLY_ENV = "LIGHTSPEED_ANSWER_WHILE_STARTING"
QUICK_CRASH_SECONDS = 10.0  # a worker that dies sooner after its start counts as crash-looping
MAX_RESTART_PAUSE = 30.0
STOP_GRACE_EXTRA = 10.0  # past the workers' own shutdown timeout, SIGKILL
FATAL_EXITS = (EXIT_CONFIG, EXIT_CANTCREAT)


def listening_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """The socket every worker accepts from, inheritable by them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def inherited_socket() -> socket.socket | None:
    """In a worker: the listening socket the main process passed; None when not run as a worker."""
    fd = os.environ.get(LISTEN_FD_ENV)
    return None if fd is None else socket.socket(fileno=int(fd))


def answers_while_starting() -> bool:
    """Whether this process listens while it loads: a single process, or a worker of the first start."""
    return os.environ.get(WORKER_ENV) is None or os.environ.get(EARLY_ENV) == "1"


def worker_index() -> int | None:
    value = os.environ.get(WORKER_ENV)
    return None if value is None else int(value)


def die_with_supervisor() -> None:
    """In a worker: be sent SIGTERM when the main process dies (PR_SET_PDEATHSIG), so no orphan keeps
    serving on the port; if it is already gone, exit now."""
    expected = os.environ.get(SUPERVISOR_ENV)
    if expected is None:
        return
    import ctypes  # noqa: PLC0415 - only workers need it

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if str(os.getppid()) != expected:
        os._exit(1)


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process
    notify: socket.socket
    started: float = field(default_factory=time.monotonic)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    last_ping: float = field(default_factory=time.monotonic)
    stopping: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    def __init__(
        self,
        command: Callable[[int, bool], Sequence[str]],
        sock: socket.socket,
        count: int,
        notifier: Notifier,
        *,
        stop_timeout: float,
        on_exit: Callable[[int], None] = lambda pid: None,
    ) -> None:
        self.command = command  # (index, first start) -> the worker's argv
        self.sock = sock
        self.count = count
        self.notifier = notifier
        self.stop_timeout = stop_timeout
        self.on_exit = on_exit  # a worker's pid is gone (metrics: mark_process_dead)
        self.workers: dict[int, Worker] = {}
        self.replaced = 0
        self._stop = asyncio.Event()
        self._quick_crashes = 0
        self._watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0) or None

    async def _spawn(self, index: int, first: bool) -> Worker:
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        name = f"lightspeed-supervisor-{os.getpid()}-{index}-{uuid.uuid4().hex[:8]}"
        notify.bind("\0" + name)
        notify.setblocking(False)
        env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")}
        env.update(
            {
                LISTEN_FD_ENV: str(self.sock.fileno()),
                WORKER_ENV: str(index),
                SUPERVISOR_ENV: str(os.getpid()),
                EARLY_ENV: "1" if first else "0",
                "NOTIFY_SOCKET": "@" + name,
            }
        )
        if self._watchdog_usec:
            env["WATCHDOG_USEC"] = str(self._watchdog_usec)
        process = await asyncio.create_subprocess_exec(
            *self.command(index, first), pass_fds=(self.sock.fileno(),), env=env, start_new_session=True
        )
        worker = Worker(index, process, notify)
        asyncio.get_running_loop().add_reader(notify.fileno(), self._read_notify, worker)
        log.info("worker_started", worker=index, pid=process.pid)
        return worker

    def _read_notify(self, worker: Worker) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                message = worker.notify.recv(4096).decode("utf-8", "replace")
                fields = message.split("\n")
                if "READY=1" in fields and not worker.ready.is_set():
                    worker.ready.set()
                    log.info("worker_ready", worker=worker.index, pid=worker.pid)
                if "WATCHDOG=1" in fields:
                    worker.last_ping = time.monotonic()

    def _forget(self, worker: Worker) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(worker.notify.fileno())
        worker.notify.close()
        self.on_exit(worker.pid)

    def stop(self) -> None:
        """What SIGTERM does: stop the workers, then `run` returns."""
        self._stop.set()

    async def run(self) -> int:
        """Start the workers, serve until SIGTERM/SIGINT, stop them; the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        for index in range(self.count):
            self.workers[index] = await self._spawn(index, first=True)
        code = await self._wait_ready()
        if code is not None:
            await self._stop_all()
            return code
        self.notifier.ready(f"serving with {self.count} workers")
        log.info("workers_ready", workers=self.count, pids=[w.pid for w in self.workers.values()])
        async with watchdog_running(self.notifier):
            watching = [asyncio.create_task(self._watch(index)) for index in range(self.count)]
            hung = asyncio.create_task(self._kill_hung_workers())
            await self._stop.wait()
            for task in [*watching, hung]:
                task.cancel()
            await asyncio.gather(*watching, hung, return_exceptions=True)
            self.notifier.stopping("stopping the workers")
            log.info("workers_stopping", grace_seconds=self.stop_timeout)
            await self._stop_all()
        return 0

    async def _wait_ready(self) -> int | None:
        """None once every worker is ready; an exit code if one failed first (or a stop came)."""
        pending = {asyncio.create_task(w.ready.wait()): w for w in self.workers.values()} | {
            asyncio.create_task(w.process.wait()): w for w in self.workers.values()
        }
        stop = asyncio.create_task(self._stop.wait())
        try:
            while not all(w.ready.is_set() for w in self.workers.values()):
                done, _ = await asyncio.wait([*pending, stop], return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    return 0
                for task in done:
                    worker = pending.pop(task)
                    if worker.process.returncode is not None:
                        code = worker.process.returncode
                        log.error("worker_failed_to_start", worker=worker.index, pid=worker.pid, exit_code=code)
                        return code if code in FATAL_EXITS else 1
            return None
        finally:
            for task in [*pending, stop]:
                task.cancel()

    async def _watch(self, index: int) -> None:
        """Replace worker `index` whenever it exits."""
        while True:
            worker = self.workers[index]
            code = await worker.process.wait()
            self._forget(worker)
            lived = time.monotonic() - worker.started
            log.error(
                "worker_exited",
                worker=index,
                pid=worker.pid,
                exit_code=code if code >= 0 else None,
                signal=signal.Signals(-code).name if code < 0 else None,
                seconds_alive=round(lived, 1),
            )
            self._quick_crashes = self._quick_crashes + 1 if lived < QUICK_CRASH_SECONDS else 0
            if self._quick_crashes > 1:
                pause = min(MAX_RESTART_PAUSE, 2 ** (self._quick_crashes - 1))
                log.warning("worker_restart_paused", worker=index, seconds=pause)
                await asyncio.sleep(pause)
            self.workers[index] = await self._spawn(index, first=False)
            self.replaced += 1
            self.notifier.status(f"serving with {self.count} workers; {self.replaced} replaced")

    async def _kill_hung_workers(self) -> None:
        """A worker whose event loop stopped pinging for the watchdog timeout is killed (then replaced)."""
        if not self._watchdog_usec:
            return
        timeout = self._watchdog_usec / 1_000_000
        while True:
            await asyncio.sleep(timeout / 4)
            now = time.monotonic()
            for worker in list(self.workers.values()):
                if worker.ready.is_set() and now - worker.last_ping > timeout and worker.process.returncode is None:
                    log.error(
                        "worker_hung", worker=worker.index, pid=worker.pid, seconds_silent=round(now - worker.last_ping)
                    )
                    worker.process.kill()

    async def _stop_all(self) -> None:
        for worker in self.workers.values():
            if worker.process.returncode is None:
                worker.process.send_signal(signal.SIGTERM)
        waits = [w.process.wait() for w in self.workers.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), self.stop_timeout + STOP_GRACE_EXTRA)
        except TimeoutError:
            for worker in self.workers.values():
                if worker.process.returncode is None:
                    log.error("worker_killed_at_stop", worker=worker.index, pid=worker.pid)
                    worker.process.kill()
            await asyncio.gather(*(w.process.wait() for w in self.workers.values()))
        for worker in self.workers.values():
            self._forget(worker)
        log.info("workers_stopped")


def metrics_directory(base: Path) -> Path:
    """A fresh directory for prometheus_client's multiprocess files (the old run's removed)."""
    base.mkdir(mode=0o750, parents=True, exist_ok=True)
    for stale in base.glob("*.db"):
        stale.unlink()
    return base
