"""lightspeed_common.progress: a bar on a terminal, `progress` events under systemd or into a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import termios
from collections.abc import Iterator
from typing import TextIO

import pytest
from structlog.testing import capture_logs

from lightspeed_common.progress import Progress


@pytest.fixture
def terminal() -> Iterator[tuple[int, TextIO]]:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    stream = os.fdopen(follower, "w")
    yield leader, stream
    stream.close()
    os.close(leader)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_on_a_terminal_a_bar_and_no_events(terminal: tuple[int, TextIO], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    leader, stream = terminal
    with capture_logs() as logs, Progress("copying", 4, unit="files", stream=stream, every=0) as progress:
        progress.advance(4)
    stream.flush()
    assert b"copying" in os.read(leader, 4096)
    assert logs == []


def test_under_systemd_events_every_interval_even_on_a_terminal(
    terminal: tuple[int, TextIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")  # what systemd sets for a service's standard error
    _, stream = terminal
    clock = Clock()
    with capture_logs() as logs, Progress("copying", 40, stream=stream, every=5, clock=clock) as progress:
        for _ in range(4):
            clock.now += 3
            progress.advance(10)
    assert [(e["done"], e["total"], e["rate_per_second"], e["eta_seconds"]) for e in logs] == [
        (20, 40, 3.3, 6.0),  # 6 s in: the first interval passed
        (40, 40, 3.3, 0.0),  # 12 s in: the next; the end adds nothing it has not said
    ]


def test_the_end_is_logged_when_the_last_event_was_earlier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOCATION_ID", "0123")
    clock = Clock()
    with capture_logs() as logs, Progress("copying", None, every=5, clock=clock) as progress:
        clock.now = 6
        progress.advance(1)
        progress.advance(2)
    assert [(e["done"], e["total"], e["eta_seconds"]) for e in logs] == [(1, None, None), (3, None, None)]


def test_work_a_daemon_repeats_never_draws_a_bar(terminal: tuple[int, TextIO], monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector's flush every interval, on `make run`'s terminal: events only, and only when slow."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    leader, stream = terminal
    clock = Clock()
    with capture_logs() as logs, Progress("delivering", 2, stream=stream, every=5, clock=clock, bar=False) as progress:
        clock.now = 6
        progress.advance(2)
    stream.write("end\n")
    stream.flush()
    assert os.read(leader, 4096).strip() == b"end"  # nothing was drawn before it
    assert [(e["done"], e["total"]) for e in logs] == [(2, 2)]
