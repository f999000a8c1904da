"""`make test` on a machine without the Debian packages it needs says, in one line, what to install."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "prerequisites.sh"


def test_a_user_without_the_packages_is_told_in_one_line_what_to_install() -> None:
    """Item 23.22: as a user who cannot install (nobody), with no tools on PATH: exit 1 and one line naming
    the packages and the command that installs them."""
    result = subprocess.run(
        ["runuser", "-u", "nobody", "--", "/usr/bin/env", "PATH=/nonexistent", "/bin/bash", "-s"],
        input=SCRIPT.read_text(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("make test needs these Debian packages: sudo apt-get install -y --no-install-recommends ")
    assert {"make", "wrk", "debootstrap", "systemd-container"} <= set(line.split(": ", 1)[1].split())


def test_on_this_machine_every_package_is_there() -> None:
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=600, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
