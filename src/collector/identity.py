"""Who the collector is to the ingress: the Bearer token it sends and the identity its User-Agent
carries, in lightspeed-to-dataverse-exporter's three modes.

- `manual`: a token from the config, a file or a systemd credential (read at each upload, so it
  may rotate); the identity is `identity_id`, or this installation's id.
- `openshift`: the token is the `cloud.openshift.com` auth of a pull secret (a
  `.dockerconfigjson` file or credential); the identity is the cluster id (`identity_id`, or
  `cluster_id_file`).
- `sso`: an OAuth2 client-credentials grant against `token_url`, the token cached until shortly
  before it expires and fetched again when the ingress refuses it; optionally exchanged for an
  ingress token at `exchange_url` (the exporter's api.openshift.com access_token step). The
  identity is `identity_id`, or the token's `preferred_username` or `sub`.

The User-Agent is `<product>/user-data-collection cluster/<identity>`, the form the ingress's
auth proxy reads the identity from.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
import structlog

from collector.errors import IngressUnavailable
from lightspeed_common.config import AppConfig, CollectorIdentityConfig
from lightspeed_common.credentials import read_secret
from lightspeed_common.errors import ConfigError
from lightspeed_common.http.outbound import Outbound
from lightspeed_common.identity import installation_id

log = structlog.get_logger(__name__)

# A cached SSO token is used until this long before it expires (or a tenth of its life, if less).
EXPIRY_MARGIN_SECONDS = 60.0


class Credentials(Protocol):
    identity: str

    async def token(self) -> str | None:
        """The Bearer token for the next upload; IngressUnavailable when none can be had now."""

    def refused(self) -> None:
        """The ingress refused the last token (401): the next `token()` gets a fresh one."""


def user_agent(product: str, identity: str) -> str:
    return f"{product}/user-data-collection cluster/{identity}"


class FileCredentials:
    """`manual` and `openshift`: the token read from its source at each upload."""

    def __init__(self, identity: str, read: Callable[[], str | None]) -> None:
        self.identity = identity
        self._read = read

    async def token(self) -> str | None:
        try:
            return await asyncio.to_thread(self._read)
        except (OSError, ConfigError) as exc:
            # Rotated into something unreadable: the batch waits for the next flush.
            raise IngressUnavailable(None, f"cannot read the ingress token: {exc}") from None

    def refused(self) -> None:
        return None  # the next upload reads the source again


def pull_secret_token(text: str, source: str) -> str:
    """The `cloud.openshift.com` auth of a pull secret; ConfigError naming the source, never the secret."""
    try:
        auth = json.loads(text)["auths"]["cloud.openshift.com"]["auth"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(source, ["not a pull secret with an auths.cloud.openshift.com.auth entry"]) from None
    if not isinstance(auth, str) or not auth:
        raise ConfigError(source, ["the cloud.openshift.com auth is empty"])
    return auth


class SsoCredentials:
    def __init__(
        self, config: CollectorIdentityConfig, secret: str, http: tuple[aiohttp.ClientSession, Outbound], timeout: float
    ) -> None:
        self._config = config
        self._secret = secret
        self._session, self._outbound = http
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._cached: tuple[str, float] | None = None
        self._lock = asyncio.Lock()
        self.identity = config.identity_id or "unknown"
        self.grants = 0

    async def token(self) -> str:
        async with self._lock:
            if self._cached is not None and time.monotonic() < self._cached[1]:
                return self._cached[0]
            access, lifetime = await self._grant()
            if not self._config.identity_id:
                self.identity = derive_identity(access)
            token = await self._exchange(access) if self._config.exchange_url else access
            margin = min(EXPIRY_MARGIN_SECONDS, lifetime / 10)
            self._cached = (token, time.monotonic() + lifetime - margin)
            return token

    def refused(self) -> None:
        self._cached = None

    async def _grant(self) -> tuple[str, float]:
        config = self._config
        form = {"grant_type": "client_credentials", "client_id": str(config.client_id), "client_secret": self._secret}
        if config.scope:
            form["scope"] = config.scope
        self.grants += 1
        answer = await self._post(str(config.token_url), data=form)
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise IngressUnavailable(None, "the token endpoint's answer has no access_token")
        expires_in = answer.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 300.0
        log.info("sso_token_granted", expires_in_seconds=lifetime, identity=self.identity)
        return token, lifetime

    async def _exchange(self, access: str) -> str:
        answer = await self._post(str(self._config.exchange_url), headers={"Authorization": f"Bearer {access}"})
        try:
            token = answer["auths"]["cloud.openshift.com"]["auth"]
        except (KeyError, TypeError):
            raise IngressUnavailable(None, "the exchange answer has no auths.cloud.openshift.com.auth") from None
        return str(token)

    async def _post(self, url: str, **options: Any) -> dict[str, Any]:
        """POST for a JSON object; every failure is IngressUnavailable (the batch waits), the secret never in it."""
        try:
            async with self._session.post(url, timeout=self._timeout, **options, **self._outbound.via(url)) as resp:
                body = await resp.text(errors="replace")
                if resp.status != 200:
                    raise IngressUnavailable(resp.status, f"{url} answered {resp.status}: {body[:200]}")
                answer = json.loads(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise IngressUnavailable(None, f"{url}: {str(exc) or type(exc).__name__}") from None
        except ValueError:
            raise IngressUnavailable(200, f"{url} answered with something that is not JSON") from None
        if not isinstance(answer, dict):
            raise IngressUnavailable(200, f"{url} answered with JSON that is not an object")
        return answer


def derive_identity(token: str) -> str:
    """The token's `preferred_username` or `sub` (not verified: it only names us), as the exporter does."""
    import jwt  # noqa: PLC0415 - only here: PyJWT brings `cryptography`, 25 ms and MBs the collector need not load

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return "unknown"
    return str(claims.get("preferred_username") or claims.get("sub") or "unknown")


async def build_credentials(config: AppConfig, http: tuple[aiohttp.ClientSession, Outbound]) -> Credentials:
    """The configured mode's credentials; ConfigError names what is missing or unreadable."""
    dc = config.user_data_collection.data_collector
    cfg = config.collector
    ident = cfg.identity
    if ident.mode == "sso":
        key = "collector.identity.client_secret_file"
        secret = await asyncio.to_thread(_read, key, ident.client_secret_file, ident.client_secret_credential)
        if not secret:
            raise ConfigError("collector.identity", ["sso needs client_secret_file or the client secret credential"])
        return SsoCredentials(ident, secret, http, float(dc.connection_timeout_seconds))
    if ident.mode == "openshift":
        return await _openshift(ident)

    def manual() -> str | None:
        return read_secret(dc.ingress_server_auth_token, cfg.ingress_token_file, cfg.ingress_token_credential)

    return FileCredentials(ident.identity_id or await _installation(config), manual)


async def _openshift(ident: CollectorIdentityConfig) -> FileCredentials:
    def pull_secret() -> str:
        text = _read("collector.identity.pull_secret_file", ident.pull_secret_file, ident.pull_secret_credential)
        if text is None:
            raise ConfigError("collector.identity", ["openshift needs pull_secret_file or the pull secret credential"])
        return pull_secret_token(text, "collector.identity.pull_secret_file")

    await asyncio.to_thread(pull_secret)  # now, so a missing or malformed secret stops the start
    cluster_id = await asyncio.to_thread(_read, "collector.identity.cluster_id_file", ident.cluster_id_file, None)
    identity = ident.identity_id or cluster_id
    if not identity:
        raise ConfigError("collector.identity", ["openshift needs identity_id or cluster_id_file (the cluster id)"])
    return FileCredentials(identity, pull_secret)


def _read(key: str, file: Any, credential: str | None) -> str | None:
    try:
        return read_secret(None, file, credential)
    except OSError as exc:
        raise ConfigError(key, [f"cannot read {exc.filename}: {exc.strerror}"]) from None


async def _installation(config: AppConfig) -> str:
    try:
        return await asyncio.to_thread(installation_id, config.service.state_dir)
    except OSError as exc:
        # The server creates it; a collector that may not write the server's state says so.
        log.warning("installation_id_unavailable", state_dir=str(config.service.state_dir), error=exc.strerror)
        return "unknown"
