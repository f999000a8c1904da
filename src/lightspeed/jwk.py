"""The jwk-token module: JWTs signed by an identity provider, checked against its JWK set.

The key set is fetched from `jwk_config.url` when first needed, used for `cache_seconds`, and
fetched again early only for a token naming a key id the set lacks (a rotated key), at most
once per `refresh_interval_seconds`: forged key ids cannot turn requests into fetches. A failed
fetch keeps the keys already held. Signatures are checked by PyJWT (with `cryptography`).

A client sends the same token with each request until it expires, so a token that checked out
is remembered (`VERIFIED_TOKENS` of them, the least recently used forgotten first) with the user
it names: the same bytes again cost no signature check (an RS256 check is most of what a JWT
adds to a request). What can change for the same bytes is still checked each time: the token's
expiry against the clock, and that the key which verified it is the one the key set holds now
(a key gone from the set, or a set fetched again, means a full check). Only exact tokens match,
and a token that fails is never remembered.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import structlog
from aiohttp import web

from lightspeed.access import Policy, RoleRules, User
from lightspeed_common.config_auth import JwkConfiguration
from lightspeed_common.config_base import ProxyConfig
from lightspeed_common.errors import Unauthorized
from lightspeed_common.http.bearer import NO_CREDENTIALS
from lightspeed_common.http.outbound import Outbound
from lightspeed_common.version import VERSION

log = structlog.get_logger(__name__)

# The key type each algorithm family verifies with.
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


def _refused(cause: str) -> Unauthorized:
    return Unauthorized(NO_CREDENTIALS, cause)


class KeySet:
    """The identity provider's signing keys, fetched rarely and shared by every request."""

    def __init__(self, config: JwkConfiguration, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        # Read now (blocking, at start-up, as check-config does): an unusable CA file stops the start.
        self._outbound = Outbound.build(config.tls, ProxyConfig(), "authentication.jwk_config")
        self._clock = clock
        self._keys: list[tuple[dict[str, Any], jwt.PyJWK]] = []
        self._failure = "Unable to reach authentication key server"
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.fetches = 0

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The key that verifies a token with header `kid`/`alg`; 401 when there is none."""
        if self._fetched_at is None or self._clock() - self._fetched_at >= self._config.cache_seconds:
            await self._refresh()
        found = self._find(kid, alg)
        if found is None and kid is not None:
            await self._refresh()  # a rotated key, if the interval allows a fetch
            found = self._find(kid, alg)
        if found is None:
            raise _refused("Token signed by unknown key")
        return found

    def _find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        family = _KEY_TYPES.get(alg[:2])
        for entry, key in self._keys:
            if kid is not None and entry.get("kid") != kid:
                continue
            if entry.get("alg", alg) == alg and entry.get("kty") == family:
                return key
            if kid is not None:
                return None  # the key with this id is for another algorithm
        return None

    async def _refresh(self) -> None:
        attempted = self._attempted_at
        async with self._lock:
            now = self._clock()
            fetched_meanwhile = self._attempted_at != attempted
            throttled = (
                self._attempted_at is not None and now - self._attempted_at < self._config.refresh_interval_seconds
            )
            if not fetched_meanwhile and not throttled:
                self._attempted_at = now
                self.fetches += 1
                try:
                    self._keys = await self._fetch()
                    self._fetched_at = now
                except _Unusable as exc:
                    log.warning(
                        "jwks_fetch_failed", url=str(self._config.url), reason=exc.reason, keeping=len(self._keys)
                    )
                    self._failure = exc.cause
            if not self._keys:
                raise _refused(self._failure)

    async def _fetch(self) -> list[tuple[dict[str, Any], jwt.PyJWK]]:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self._config.fetch_timeout_seconds)
            self._session = self._outbound.session(timeout=timeout, headers={"User-Agent": f"lightspeed/{VERSION}"})
        try:
            async with self._session.get(str(self._config.url)) as response:
                response.raise_for_status()
                data = json.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Unusable("Unable to reach authentication key server", repr(exc)) from None
        except ValueError as exc:
            raise _Unusable("Authentication key server returned invalid data", str(exc)) from None
        keys = _signing_keys(data)
        log.info("jwks_fetched", url=str(self._config.url), keys=len(keys))
        return keys

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Unusable(Exception):
    def __init__(self, cause: str, reason: str) -> None:
        super().__init__(reason)
        self.cause, self.reason = cause, reason


def _signing_keys(data: Any) -> list[tuple[dict[str, Any], jwt.PyJWK]]:
    """The set's keys for signatures; none usable is lightspeed-stack's "malformed"."""
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise _Unusable("Authentication keys are malformed", "no 'keys' list")
    keys = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            keys.append((entry, jwt.PyJWK(entry)))
        except jwt.PyJWTError:
            continue  # a key type or algorithm this server does not verify with
    if not keys:
        raise _Unusable("Authentication keys are malformed", "no usable signing key")
    return keys


VERIFIED_TOKENS = 1024  # tokens remembered as verified (a token is 1-2 kB, at most the 8 kB of a header line)


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token that checked out: the user it names, the key that verified it, and until when it is valid."""

    user: User
    key: jwt.PyJWK
    kid: str | None
    alg: str
    valid_until: float  # exp + leeway, on time.time()'s clock


class JwkTokenAuth:
    def __init__(self, config: JwkConfiguration, policy: Policy, role_rules: RoleRules) -> None:
        self._config = config
        self._claims = config.jwt_configuration
        self._policy = policy
        self._role_rules = role_rules
        self.keys = KeySet(config)
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self.signature_checks = 0

    async def __call__(self, request: web.Request) -> User:
        token = _token(request)
        known = self._verified.get(token)
        if known is not None:
            try:
                current = await self.keys.key(known.kid, known.alg)
            except Unauthorized:
                self._verified.pop(token, None)  # its key left the set
                raise
            if current is known.key and time.time() < known.valid_until:  # PyJWT: expired once exp <= now - leeway
                if self._verified.get(token) is known:  # (another request may have dropped it meanwhile)
                    self._verified.move_to_end(token)
                return known.user
            self._verified.pop(token, None)
            if current is known.key:
                raise _refused("Token has expired")
            # The key set was fetched again since: check the token in full.
        verified = await self._check(token)
        self._verified[token] = verified
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return verified.user

    @property
    def remembered(self) -> int:
        """How many verified tokens are held."""
        return len(self._verified)

    async def _check(self, token: str) -> _Verified:
        header = self._header(token)
        alg, kid = header["alg"], header.get("kid")
        kid = kid if isinstance(kid, str) else None
        key = await self.keys.key(kid, alg)
        claims = self._decode(token, key, alg)
        user_id = self._claim(claims, self._claims.user_id_claim)
        username = self._claim(claims, self._claims.username_claim)
        roles = self._role_rules.roles(claims)
        user = User(user_id, username, roles, self._policy.actions(roles))
        return _Verified(user, key, kid, alg, int(claims["exp"]) + self._config.leeway_seconds)

    @staticmethod
    def _claim(claims: dict[str, Any], name: str) -> str:
        if name not in claims:
            raise _refused(f"Token missing claim: {name}")
        return str(claims[name])

    def _header(self, token: str) -> dict[str, Any]:
        """The token's header, its `alg` one this server accepts; 401 otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise _refused("Token could not be decoded") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._config.algorithms:
            raise _refused("Token signed by unknown key")
        return header

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        """The token's claims once its signature and times check out; 401 otherwise."""
        self.signature_checks += 1
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self._config.audience,
                issuer=self._config.issuer,
                leeway=self._config.leeway_seconds,
                options={"require": ["exp"], "verify_aud": self._config.audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise _refused(_cause(exc)) from None

    async def close(self) -> None:
        await self.keys.close()


def _cause(exc: jwt.PyJWTError) -> str:
    """lightspeed-stack's cause for each way a token fails."""
    match exc:
        case jwt.InvalidSignatureError():
            return "Invalid token signature"
        case jwt.ExpiredSignatureError():
            return "Token has expired"
        case (
            jwt.ImmatureSignatureError()
            | jwt.InvalidIssuedAtError()
            | jwt.InvalidAudienceError()
            | jwt.InvalidIssuerError()
            | jwt.MissingRequiredClaimError()
        ):
            return "Token validation failed"
        case jwt.DecodeError():
            return "Token could not be decoded"
        case _:
            return "Token format error"


def _token(request: web.Request) -> str:
    header = request.headers.get("Authorization")
    if not header:
        raise _refused("No Authorization header found")
    parts = header.strip().split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise _refused("No token found in Authorization header")
    return parts[1]
