"""Workers starting together with a cold answer-index cache embed the documents once, not once each."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from lightspeed.answers.index_cache import IndexCache
from lightspeed.models.embedding import Vectors

KEYS = [f"doc{i}" for i in range(4)]
ROWS = [(2, 3)] * len(KEYS)


def blocked_flock_waiters() -> int:
    """Lock requests waiting in the kernel (`/proc/locks` shows them with `->`)."""
    return sum(1 for line in Path("/proc/locks").read_text().splitlines() if "->" in line)


def test_a_second_worker_waits_for_the_first_and_loads_what_it_embedded(tmp_path: Path) -> None:
    """The first worker is held inside its first embedding; the second, started meanwhile, waits rather
    than embedding everything itself, then loads the first one's vectors: each document is embedded once,
    and both get the same vectors."""
    release, embedding = threading.Event(), threading.Event()
    embedded: list[str] = []

    def embed_as(worker: str) -> object:
        def embed(i: int) -> tuple[Vectors, Vectors]:
            if worker == "first":
                embedding.set()
                release.wait(60)
            embedded.append(f"{worker}:{KEYS[i]}")
            return np.full((2, 4), i, dtype=np.float32), np.full((3, 4), i, dtype=np.float32)

        return embed

    results: dict[str, list[tuple[Vectors, Vectors]]] = {}

    def start(worker: str) -> threading.Thread:
        cache = IndexCache(tmp_path, progress_every=60)
        thread = threading.Thread(
            target=lambda: results.__setitem__(worker, cache.vectors("model", KEYS, ROWS, embed_as(worker)))  # type: ignore[arg-type]
        )
        thread.start()
        return thread

    waiting_before = blocked_flock_waiters()
    first = start("first")
    assert embedding.wait(60), "the first worker never began embedding"
    second = start("second")
    deadline = time.monotonic() + 60
    while not (blocked_flock_waiters() > waiting_before or not second.is_alive()):
        assert time.monotonic() < deadline, "the second worker neither waited nor finished"
        time.sleep(0.01)
    release.set()
    first.join(60)
    second.join(60)
    assert sorted(embedded) == sorted(f"first:{key}" for key in KEYS)
    for (passages, units), (again, units_again) in zip(results["first"], results["second"], strict=True):
        assert np.array_equal(passages, again)
        assert np.array_equal(units, units_again)
    assert len(results["second"]) == len(KEYS)
