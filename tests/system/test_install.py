"""Issue 28.5: the base package runs the collector and the ingest without PyTorch; the server needs its extra.

The project is installed, as an operator would (`pip install <checkout>`), into a fresh venv of its
own; pip takes the packages from the registry (or its cache). The venv is kept per module: the
tests below look at it in turn.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_llm import free_port
from tests.ingest_support import feedback_record
from tests.processes import call
from tests.system.test_pipeline import pipeline_config

REPO = Path(__file__).resolve().parents[2]
BASE_LIMIT_MB = 150


def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=check, env=env, timeout=900)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with `pip install <checkout>`: the base package, no extra."""
    venv = tmp_path_factory.mktemp("base-install") / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--quiet", REPO)
    return venv


def megabytes(folder: Path) -> float:
    return sum(p.lstat().st_size for p in folder.rglob("*") if not p.is_dir()) / 1e6


def test_the_base_install_has_no_embedding_stack_and_stays_small(base: Path) -> None:
    for module in ("torch", "transformers", "sentence_transformers", "bm25s"):
        imported = run(base / "bin" / "python", "-c", f"import {module}", check=False)
        assert imported.returncode == 1, module
        assert f"No module named '{module}'" in imported.stderr
    assert megabytes(base) < BASE_LIMIT_MB


def test_the_base_install_gives_the_collector_and_the_ingest(base: Path) -> None:
    collector = run(base / "bin" / "lightspeed-collector", "--help")
    assert collector.stdout.startswith("usage: lightspeed-collector")
    ingest = run(base / "bin" / "lightspeed-ingest", "--help")
    assert ingest.stdout.startswith("usage: lightspeed-ingest")


def test_serve_without_the_server_extra_exits_naming_it(base: Path, tmp_path: Path) -> None:
    config = pipeline_config(tmp_path, REPO / "docs", free_port(), free_port(), 1)
    checked = run(base / "bin" / "lightspeed", "check-config", "--config", config)
    assert f"{config}: OK" in checked.stdout
    served = run(base / "bin" / "lightspeed", "serve", "--config", config, check=False)
    assert served.returncode == 69
    assert "server_extra_missing" in served.stdout
    assert "pip install 'lightspeed[server]'" in served.stdout


@pytest.fixture
def ingest(base: Path, tmp_path: Path) -> Iterator[tuple[Path, int]]:
    port = free_port()
    config = pipeline_config(tmp_path, REPO / "docs", free_port(), port, 1)
    log = tmp_path / "ingest.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [base / "bin" / "lightspeed-ingest", "serve", "--config", config], stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                call(port, "GET", "/liveness")
                break
            except OSError:
                assert time.monotonic() < deadline, "lightspeed-ingest did not answer"
                time.sleep(0.2)
        yield config, port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_records_go_from_a_base_collector_to_a_base_ingest(base: Path, ingest: tuple[Path, int]) -> None:
    """Both daemons of the base install do their work: a feedback record is shipped and indexed."""
    config, port = ingest
    feedback = config.parent / "data" / "feedback"
    feedback.mkdir(parents=True)
    (feedback / "f-1.json").write_bytes(feedback_record("c-base", "shipped without torch"))
    shipped = run(base / "bin" / "lightspeed-collector", "--config", config, "--once", check=False)
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    assert list(feedback.glob("*.json")) == []
    found = call(port, "GET", "/api/admin/v1/feedback", token="admin-key")
    assert [item["record"]["user_feedback"] for item in found["feedback"]] == ["shipped without torch"]


def test_install_sh_names_the_roles_it_knows() -> None:
    refused = run("bash", REPO / "packaging" / "install.sh", "--role", "everything", check=False)
    assert refused.returncode == 64
    assert "--role must be all, server, collector or ingest, not 'everything'" in refused.stderr
