"""Progress on a backlog: a bar when `--once` runs on a terminal, `progress` events with done and total
everywhere else (a pipe, the journal)."""

from __future__ import annotations

import sys
from pathlib import Path

from structlog.testing import capture_logs

from collector.daemon import Collector
from lightspeed_common.config import AppConfig
from tests.collector.conftest import CollectorConfig
from tests.collector.test_collector import roots
from tests.ingress import REPO, Ingress, config_file, write_record
from tests.support import on_terminal


def backlog(config: AppConfig, count: int) -> None:
    feedback, _ = roots(config)
    for n in range(count):
        write_record(feedback, f"{n:04d}.json", {"user_id": "u", "n": n})


async def test_without_a_terminal_progress_events_say_done_and_total(
    ingress: Ingress, make_config: CollectorConfig
) -> None:
    config = make_config(collector={"max_batch_files": 10}, logging={"progress_interval_seconds": 0.000001})
    backlog(config, 30)
    with capture_logs() as logs:
        assert await Collector(config, once=True).async_run() is True
    progress = [(e["task"], e["done"], e["total"]) for e in logs if e["event"] == "progress"]
    assert progress[:3] == [("delivering", 10, 30), ("delivering", 20, 30), ("delivering", 30, 30)]
    assert progress[-1] == ("delivering", 30, 30)  # and a last one when the work ends
    assert all("rate_per_second" in e and "eta_seconds" in e for e in logs if e["event"] == "progress")


async def test_short_work_logs_no_progress(ingress: Ingress, make_config: CollectorConfig) -> None:
    config = make_config()
    backlog(config, 3)
    with capture_logs() as logs:
        assert await Collector(config, once=True).async_run() is True
    assert [e for e in logs if e["event"] == "progress"] == []


async def test_once_on_a_terminal_draws_a_bar(ingress: Ingress, make_config: CollectorConfig, tmp_path: Path) -> None:
    config = make_config(collector={"max_batch_files": 10})
    backlog(config, 30)
    command = [sys.executable, "-m", "collector", "run", "--once", "--config", str(config_file(config, tmp_path))]
    code, text = await on_terminal(command, tmp_path / "out.log", cwd=REPO)
    assert code == 0, (tmp_path / "out.log").read_text()[-2000:]
    assert "delivering: 100%" in text, text
    assert "30/30" in text
    assert "records/s" in text
