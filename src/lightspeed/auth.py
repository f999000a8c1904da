"""Authentication modules: who is asking, with which roles, and so which actions (lightspeed.access).

- `noop`: the user comes from `?user_id=` (a fixed default otherwise); for
  development, every caller has the admin role.
- `noop-with-token`: the same, but a Bearer header must be present (401 without).
- `api-key`: Bearer keys map to a user and roles, read from a YAML file or a
  systemd credential: a list of `{key, user_id, role}` (or `roles: [...]`). The key is
  also accepted as the password of Basic auth, so a browser can open /settings.
- `jwk-token`: JWTs from an identity provider (lightspeed.jwk).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog
import yaml
from aiohttp import web

from lightspeed.access import ADMIN_ROLE, Policy, RoleRules, User, policy_for
from lightspeed.jwk import JwkTokenAuth
from lightspeed_common.config_auth import AuthenticationConfig, AuthorizationConfig
from lightspeed_common.credentials import read_secret
from lightspeed_common.errors import ConfigError, Unauthorized
from lightspeed_common.http.bearer import NO_CREDENTIALS, bearer_token

log = structlog.get_logger(__name__)
# `lightspeed new-api-key` makes keys with this prefix; redaction recognises them in user text.
API_KEY_PREFIX = "lsk_"


class Authenticator(Protocol):
    async def __call__(self, request: web.Request) -> User: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class NoopAuth:
    default_user_id: str
    default_username: str
    policy: Policy
    require_token: bool = False

    async def __call__(self, request: web.Request) -> User:
        if self.require_token:
            bearer_token(request)
        user_id = request.query.get("user_id") or self.default_user_id
        roles = frozenset({ADMIN_ROLE})
        return User(user_id, self.default_username, roles, self.policy.actions(roles))

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class ApiKeyEntry:
    key: str
    user_id: str
    username: str
    roles: frozenset[str]


class ApiKeyAuth:
    def __init__(self, entries: list[ApiKeyEntry], policy: Policy) -> None:
        self._entries = [
            (entry.key, User(entry.user_id, entry.username, entry.roles, policy.actions(entry.roles)))
            for entry in entries
        ]

    async def close(self) -> None:
        return None

    async def __call__(self, request: web.Request) -> User:
        token = bearer_token(request).encode()
        # Compare against every key in constant time: no early exit that leaks which matched.
        found = None
        for key, user in self._entries:
            if hmac.compare_digest(key.encode(), token):
                found = user
        if found is None:
            raise Unauthorized(NO_CREDENTIALS, "Invalid API key")
        return found


def parse_api_keys(text: str, source: str, known_roles: frozenset[str] | None = None) -> list[ApiKeyEntry]:
    """Parse the keys file; ConfigError names the entry that is wrong, never a key.

    `known_roles`: the roles access rules name; None for the built-in policy (user or admin).
    """
    data = yaml.safe_load(text)
    if not isinstance(data, list) or not data:
        raise ConfigError(source, ["the API keys file must be a non-empty list of {key, user_id, role}"])
    return [_api_key_entry(index, item, source, known_roles) for index, item in enumerate(data)]


def _api_key_entry(index: int, item: object, source: str, known_roles: frozenset[str] | None) -> ApiKeyEntry:
    if not isinstance(item, Mapping) or not {"key", "user_id"} <= item.keys():
        raise ConfigError(source, [f"entry {index}: needs 'key' and 'user_id'"])
    if not str(item["key"]).strip():
        raise ConfigError(source, [f"entry {index}: the key is empty"])
    roles = item.get("roles", [item.get("role", "user")])
    if not isinstance(roles, list) or not roles or not all(isinstance(role, str) and role for role in roles):
        raise ConfigError(source, [f"entry {index}: roles must be a non-empty list of role names"])
    allowed = known_roles if known_roles is not None else frozenset({"user", ADMIN_ROLE})
    if unknown := sorted(set(roles) - allowed - {"user"}):
        what = "no access rule names" if known_roles is not None else "must be user or admin, not"
        raise ConfigError(source, [f"entry {index}: role {what} {', '.join(unknown)}"])
    user_id = str(item["user_id"])
    return ApiKeyEntry(str(item["key"]).strip(), user_id, str(item.get("username", user_id)), frozenset(roles))


def build_authenticator(
    config: AuthenticationConfig, authorization: AuthorizationConfig, keys_text: str | None = None
) -> Authenticator:
    """The configured module with its policy. `keys_text` is the api-key file's content, read by the caller."""
    rules = authorization.access_rules
    if config.module == "api-key":
        if keys_text is None:
            raise ConfigError("authentication.api_key", ["no keys_file or credential with API keys was found"])
        known = frozenset(rule.role for rule in rules) if rules else None
        return ApiKeyAuth(parse_api_keys(keys_text, "authentication.api_key", known), policy_for(rules))
    if config.module == "jwk-token":
        assert config.jwk_config is not None
        role_rules = config.jwk_config.jwt_configuration.role_rules
        if bool(role_rules) != bool(rules):
            # lightspeed-stack's rule: roles from claims apply only with both role_rules and access_rules.
            log.warning("authorization_ignored", reason="jwk-token applies access_rules only with role_rules too")
        if role_rules and rules:
            return JwkTokenAuth(config.jwk_config, policy_for(rules), RoleRules(role_rules))
        return JwkTokenAuth(config.jwk_config, policy_for(()), RoleRules(()))
    return NoopAuth(
        config.default_user_id,
        config.default_username,
        policy_for(()),
        require_token=config.module == "noop-with-token",
    )


def read_api_keys(config: AuthenticationConfig) -> str | None:
    """The api-key module's keys file or credential text (blocking)."""
    if config.module != "api-key":
        return None
    return read_secret(None, config.api_key.keys_file, config.api_key.credential)
