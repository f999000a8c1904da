"""Helpers the tests share (not fixtures)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def json_files(folder: Path) -> list[Path]:
    """Finished records below `folder`: what a collector would pick up."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*.json") if not p.name.startswith("."))


def fill_up(folder: Path) -> None:
    """Fill the file system holding `folder` to the last byte."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
