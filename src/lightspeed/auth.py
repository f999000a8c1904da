"""Authentication modules: who is asking, and may they administer.

- `noop`: the user comes from `?user_id=` (a fixed default otherwise); for
  development, every caller is an admin.
- `noop-with-token`: the same, but a Bearer header must be present (401 without).
- `api-key`: Bearer keys map to a user and a role, read from a YAML file or a
  systemd credential: a list of `{key, user_id, role}`. The key is also
  accepted as the password of Basic auth, so a browser can open /settings.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import yaml
from aiohttp import web

from lightspeed_common.config import AuthenticationConfig
from lightspeed_common.credentials import read_secret
from lightspeed_common.errors import ConfigError, Forbidden, Unauthorized
from lightspeed_common.http.bearer import NO_CREDENTIALS, bearer_token

Role = Literal["user", "admin"]
# `lightspeed new-api-key` makes keys with this prefix; redaction recognises them in user text.
API_KEY_PREFIX = "lsk_"


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    role: Role


class Authenticator(Protocol):
    def __call__(self, request: web.Request) -> User: ...


@dataclass(frozen=True)
class NoopAuth:
    default_user_id: str
    default_username: str
    require_token: bool = False

    def __call__(self, request: web.Request) -> User:
        if self.require_token:
            bearer_token(request)
        user_id = request.query.get("user_id") or self.default_user_id
        return User(user_id, self.default_username, "admin")


@dataclass(frozen=True)
class ApiKeyEntry:
    key: str
    user: User


class ApiKeyAuth:
    def __init__(self, entries: list[ApiKeyEntry]) -> None:
        self._entries = entries

    def __call__(self, request: web.Request) -> User:
        token = bearer_token(request).encode()
        # Compare against every key in constant time: no early exit that leaks which matched.
        found = None
        for entry in self._entries:
            if hmac.compare_digest(entry.key.encode(), token):
                found = entry.user
        if found is None:
            raise Unauthorized(NO_CREDENTIALS, "Invalid API key")
        return found


def parse_api_keys(text: str, source: str) -> list[ApiKeyEntry]:
    """Parse the keys file; ConfigError names the entry that is wrong, never a key."""
    data = yaml.safe_load(text)
    if not isinstance(data, list) or not data:
        raise ConfigError(source, ["the API keys file must be a non-empty list of {key, user_id, role}"])
    entries = []
    for index, item in enumerate(data):
        if not isinstance(item, Mapping) or not {"key", "user_id"} <= item.keys():
            raise ConfigError(source, [f"entry {index}: needs 'key' and 'user_id'"])
        role = item.get("role", "user")
        if role not in ("user", "admin") or not str(item["key"]).strip():
            raise ConfigError(source, [f"entry {index}: role must be user or admin, key non-empty"])
        user = User(str(item["user_id"]), str(item.get("username", item["user_id"])), role)
        entries.append(ApiKeyEntry(str(item["key"]).strip(), user))
    return entries


def build_authenticator(config: AuthenticationConfig, keys_text: str | None = None) -> Authenticator:
    """The configured module. `keys_text` is the api-key file's content, read by the caller."""
    if config.module == "api-key":
        if keys_text is None:
            raise ConfigError("authentication.api_key", ["no keys_file or credential with API keys was found"])
        return ApiKeyAuth(parse_api_keys(keys_text, "authentication.api_key"))
    return NoopAuth(config.default_user_id, config.default_username, require_token=config.module == "noop-with-token")


def read_api_keys(config: AuthenticationConfig) -> str | None:
    """The api-key module's keys file or credential text (blocking)."""
    if config.module != "api-key":
        return None
    return read_secret(None, config.api_key.keys_file, config.api_key.credential)


def require_admin(user: User) -> None:
    if user.role != "admin":
        # lightspeed-stack's texts for an endpoint the caller's role does not grant.
        raise Forbidden(
            "User does not have permission to access this endpoint",
            f"User {user.user_id} is not authorized to access this endpoint.",
        )
