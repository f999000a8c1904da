"""Secrets from the config, a file, or systemd credentials. Never logged."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr


def read_secret(value: SecretStr | None, file: Path | None, credential: str | None) -> str | None:
    """The first of: the inline value, the file's content, `$CREDENTIALS_DIRECTORY/<credential>`.

    Blocking (reads files). Trailing newlines are stripped. Raises OSError when
    a configured file cannot be read; a missing credential is simply absent.
    """
    if value is not None:
        return value.get_secret_value()
    if file is not None:
        return file.read_text(encoding="utf-8").strip()
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if credential and directory:
        path = Path(directory) / credential
        if path.is_file():
            return path.read_text(encoding="utf-8").strip()
    return None
