"""Start-up checks, and `check-config`, which runs a daemon's checks without starting it.

Start-up calls the very checks `check-config` runs (nothing is created or
written by them), so a config that passes `check-config` does not fail at
start for a reason `check-config` could see.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path

from lightspeed_common.config import AppConfig, load_config
from lightspeed_common.errors import EXIT_CANTCREAT, EXIT_CONFIG, ConfigError, StorageError

Check = Callable[[], object]


def writable_directory(what: str, path: Path) -> None:
    """The directory exists and is writable, or could be created: without creating anything."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise StorageError(what, path, f"{existing} is not a directory")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise StorageError(what, path, os.strerror(errno.EROFS))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(what, path, f"{existing} is not writable by this user")


def run_checks(checks: list[Check]) -> list[ConfigError | StorageError]:
    """Every check, not just up to the first failure: an operator fixes them all at once."""
    problems: list[ConfigError | StorageError] = []
    for check in checks:
        try:
            check()
        except (ConfigError, StorageError) as exc:
            problems.append(exc)
    return problems


def check_config(
    path: Path,
    checks: Callable[[AppConfig], list[Check]],
    warnings: Callable[[AppConfig], list[str]] = lambda config: [],
    notes: Callable[[AppConfig], list[str]] = lambda config: [],
) -> int:
    """`<daemon> check-config`: validate the file, then run every start-up check of that daemon on this machine;
    when all is well, `notes` says what the config means (e.g. how long data is kept).

    78 for a configuration problem, 73 for a storage directory only, each problem on its own line.
    """
    try:
        config = load_config(path)
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    problems = run_checks(checks(config))
    for problem in problems:
        if isinstance(problem, ConfigError):
            _print_config_error(problem)
        else:
            print(f"{problem.what}: {problem}", file=sys.stderr)
    for warning in warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        return EXIT_CONFIG if any(isinstance(p, ConfigError) for p in problems) else EXIT_CANTCREAT
    print(f"{path}: OK")
    for note in notes(config):
        print(note)
    return 0


def _print_config_error(exc: ConfigError) -> None:
    print(f"{exc.source}: invalid configuration", file=sys.stderr)
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)
