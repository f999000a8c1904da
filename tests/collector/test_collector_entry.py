"""The lightspeed-collector entry point reads the shared config (the daemon is issue 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.__main__ import main
from lightspeed_common.errors import EXIT_CONFIG
from lightspeed_common.version import VERSION


def test_disabled_collection_says_so_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With data_collector.enabled false it prints one line and touches nothing."""
    config = tmp_path / "c.yaml"
    config.write_text("user_data_collection:\n  data_collector:\n    enabled: false\n")
    before = sorted(tmp_path.rglob("*"))
    assert main(["--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == (
        "lightspeed-collector: data_collector.enabled is false in the config; nothing to do"
    )
    assert sorted(tmp_path.rglob("*")) == before


def test_a_bad_config_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("user_data_collection:\n  data_collector:\n    enabeld: true\n")
    assert main(["--config", str(config)]) == EXIT_CONFIG
    assert "unknown key 'user_data_collection.data_collector.enabeld'" in capsys.readouterr().err


def test_help_shows_the_options_an_operator_needs() -> None:
    """`lightspeed-collector --help` names --config and --once; `make help` shows the real install prefix."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    collector = subprocess.run(
        [sys.executable, "-m", "collector", "--help"], capture_output=True, text=True, check=True, timeout=60
    )
    make = subprocess.run(["make", "-s", "help"], capture_output=True, text=True, check=True, cwd=repo, timeout=60)
    version = subprocess.run(
        [sys.executable, "-m", "collector", "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert version.stdout.strip() == f"lightspeed-collector {VERSION}"  # item 23.23: was exit 2
    assert "--config" in collector.stdout
    assert "--once" in collector.stdout
    assert "status" in collector.stdout
    assert "$(" not in make.stdout
    assert "/opt/lightspeed/venv" in make.stdout
