"""A booted Debian container under real systemd, for the service tests.

The root file system is built once with debootstrap from the mirror apt
already uses and cached outside the checkout, in
`$XDG_CACHE_HOME/lightspeed-tests/systemd-rootfs` (`~/.cache/...`; `make clean`
removes it). Each run
boots it with `systemd-nspawn --boot --volatile=overlay` (changes vanish when
it stops), with this checkout, its `.venv` and the Python that venv was made
from bound read-only at the same paths. The container shares the host's
network, so the services it runs listen on the host's 127.0.0.1.
`Container.run()` is `nsenter` into it: `systemctl`, `journalctl`, the
install script, as an operator would type them.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lightspeed-tests" / "systemd-rootfs"
# postgresql: the container's own database server, for the PostgreSQL-backed ingest.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "libstdc++6", "postgresql")


def ensure_tools() -> None:
    """systemd-nspawn and debootstrap, installed with apt-get when missing (as on a fresh CI machine)."""
    if shutil.which("systemd-nspawn") and shutil.which("debootstrap"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "systemd-container", "debootstrap"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def apt_mirror() -> tuple[str, str]:
    """(suite, URI) of the Debian mirror apt uses on this machine."""
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        text = source.read_text()
        uris = re.search(r"^URIs:\s*(\S+)", text, re.MULTILINE)
        suites = re.search(r"^Suites:\s*(\S+)", text, re.MULTILINE)
        if uris and suites and "security" not in suites.group(1):
            return suites.group(1), uris.group(1)
    for line in (
        Path("/etc/apt/sources.list").read_text().splitlines() if Path("/etc/apt/sources.list").exists() else []
    ):
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[2]:
            return parts[2], parts[1]
    return "bookworm", "http://deb.debian.org/debian"


def rootfs() -> Path:
    """The cached Debian root file system, built on first use (about a minute)."""
    suite, mirror = apt_mirror()
    stamp = f"{suite} {mirror} {','.join(PACKAGES)}\n"
    if (CACHE / ".complete").exists() and (CACHE / ".complete").read_text() == stamp:
        return CACHE
    ensure_tools()
    building = CACHE.with_name(CACHE.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", suite, str(building), mirror],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (building / ".complete").write_text(stamp)
    shutil.rmtree(CACHE, ignore_errors=True)
    building.rename(CACHE)
    return CACHE


def venv_python_prefix(venv: Path) -> Path | None:
    """The prefix of the Python the venv was made from, if it is not the system's /usr."""
    parser = configparser.ConfigParser()
    parser.read_string("[venv]\n" + (venv / "pyvenv.cfg").read_text())
    home = Path(parser["venv"]["home"])
    prefix = home.parent
    return None if prefix == Path("/usr") else prefix


@dataclass
class Result:
    code: int
    out: str
    err: str


class Container:
    def __init__(self, process: subprocess.Popen[bytes], pid1: int, console: Path) -> None:
        self.process = process
        self.pid1 = pid1
        self.console = console

    def run(self, *command: str, check: bool = True, timeout: float = 120, stdin: str | None = None) -> Result:
        """Run a command inside the container (all its namespaces), as root."""
        done = subprocess.run(
            ["nsenter", "-t", str(self.pid1), "-a", *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
            check=False,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {done.returncode}: {done.stderr}{done.stdout}")
        return result

    def write(self, path: str, text: str, mode: str = "0644", owner: str = "root:root") -> None:
        """Write a file whole: under a dot-name first, renamed once its mode and owner are set, so a
        running collector (which ignores dot-files) never claims it half-made."""
        folder, name = path.rsplit("/", 1)
        tmp = f"{folder}/.{name}.tmp"
        self.run(
            "sh",
            "-c",
            f"mkdir -p {folder} && cat > {tmp} && chmod {mode} {tmp} && chown {owner} {tmp} && mv {tmp} {path}",
            stdin=text,
        )

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in properties)).out
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(self, unit: str, prop: str, wanted: set[str], timeout: float = 180) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            state = self.show(unit, prop, "ActiveState", "SubState", "Result", "NRestarts", "ExecMainStatus")
            seen = state[prop]
            if seen in wanted:
                return state
            time.sleep(0.1)
        journal = self.run("journalctl", "-u", unit, "--no-pager", "-n", "40", check=False).out
        raise AssertionError(f"{unit} {prop} stayed {seen!r}, wanted {wanted}\n{journal}")


def _descendants(pid: int) -> Iterator[int]:
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                yield int(child)
                yield from _descendants(int(child))


def _pid1(nspawn: subprocess.Popen[bytes]) -> int:
    """The container's systemd: a descendant of systemd-nspawn (behind its helper process)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if nspawn.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited with {nspawn.returncode}")
        for pid in _descendants(nspawn.pid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return pid
        time.sleep(0.05)
    raise RuntimeError("the container's systemd did not start")


@contextlib.contextmanager
def booted(workdir: Path, read_only: dict[Path, str] | None = None) -> Iterator[Container]:
    """Boot the container; it is powered off (and killed if need be) when the block ends, test failed or not.

    The repository is there at its own path; `read_only` maps more host folders to where the container sees them.
    """
    root = rootfs()
    venv = REPO / ".venv"
    binds = [f"--bind-ro={REPO}", *(f"--bind-ro={host}:{inside}" for host, inside in (read_only or {}).items())]
    prefix = venv_python_prefix(venv)
    if prefix is not None:
        binds.append(f"--bind-ro={prefix}")
    console = workdir / "console.log"
    with console.open("wb") as log:
        nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "--quiet",
                "--boot",
                "--register=no",
                "--keep-unit",
                "--volatile=overlay",
                f"--directory={root}",
                "--machine=lightspeed-test",
                *binds,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        container = Container(nspawn, _pid1(nspawn), console)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = container.run("systemctl", "is-system-running", check=False).out.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the container did not finish booting: {console.read_text()[-2000:]}")
        yield container
    finally:
        nspawn.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
        try:
            nspawn.wait(timeout=30)
        except subprocess.TimeoutExpired:
            nspawn.kill()
            nspawn.wait()
