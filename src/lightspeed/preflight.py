"""The server's start-up checks that need the machine, not just the file: directories, key files, documents.

Start-up calls these very functions, and `check-config` runs them all without
starting anything (nothing is created or written), so a config that passes
`check-config` does not fail at `serve` for a reason `check-config` could see.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lightspeed.auth import Authenticator, build_authenticator, read_api_keys
from lightspeed_common.checks import Check, writable_directory
from lightspeed_common.config import AppConfig
from lightspeed_common.credentials import read_secret
from lightspeed_common.errors import ConfigError
from lightspeed_common.http.outbound import Outbound
from lightspeed_common.records import RECORD_KINDS


def documents_dir(config: AppConfig) -> Path:
    """The local provider's documents folder; retrieval uses it with either provider."""
    folder = config.answers.local.documents_dir
    if not folder.is_dir():
        raise ConfigError(
            "answers.local.documents_dir", [f"{folder} is not a directory (retrieval reads its documents)"]
        )
    return folder


def authenticator(config: AppConfig) -> Authenticator:
    try:
        keys_text = read_api_keys(config.authentication)
    except OSError as exc:
        raise ConfigError("authentication.api_key.keys_file", [f"cannot read {exc.filename}: {exc.strerror}"]) from None
    return build_authenticator(config.authentication, config.authorization, keys_text)


def openai_key(config: AppConfig) -> str | None:
    cfg = config.answers.openai
    try:
        return read_secret(cfg.api_key, cfg.api_key_file, cfg.api_key_credential)
    except OSError as exc:
        raise ConfigError("answers.openai.api_key_file", [f"cannot read it: {exc.strerror}"]) from exc


def openai_outbound(config: AppConfig) -> Outbound:
    """TLS and the proxy to the OpenAI-compatible server (its files read here, so check-config sees them)."""
    cfg = config.answers.openai
    return Outbound.build(cfg.tls, cfg.proxy, "answers.openai")


def embedding_model_path(config: AppConfig) -> None:
    path = config.answers.local.embedding_model_path
    if path is not None and not path.is_dir():
        raise ConfigError("answers.local.embedding_model_path", [f"{path} is not a directory"])


def server_checks(config: AppConfig) -> list[Check]:
    from lightspeed.telemetry.wiring import registry_token  # noqa: PLC0415 - only when checking

    checks: list[Check] = [
        lambda: writable_directory("state", config.service.state_dir),
        lambda: authenticator(config),
        lambda: documents_dir(config),
        lambda: embedding_model_path(config),
    ]
    for kind in RECORD_KINDS:
        if (path := kind.storage(config)) is not None:
            checks.append(functools.partial(writable_directory, kind.storage_key, path))
    if config.answers.provider == "openai":
        checks.append(lambda: openai_key(config))
        checks.append(lambda: openai_outbound(config))
    if config.telemetry.registry_url is not None:
        checks.append(lambda: registry_token(config.telemetry))
    return checks
