"""Helpers the tests share (not fixtures)."""

from __future__ import annotations

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
    with (folder / "filler").open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass
    # Leftover blocks smaller than 64 KiB still take small writes: use them up too.
    with (folder / "filler-tail").open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 512)
                handle.flush()
        except OSError:
            pass
