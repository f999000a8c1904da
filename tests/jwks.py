"""An identity provider for tests: signing keys, a JWKS endpoint on 127.0.0.1 that counts its
fetches and can rotate, fail or serve garbage, and the tokens it signs."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec, rsa


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    @classmethod
    def rsa(cls, kid: str) -> SigningKey:
        return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, claims: dict[str, Any], *, kid: str | None = "", alg: str | None = None) -> str:
        """A token with `claims` (exp one hour ahead unless given); `kid=""` names this key's id."""
        headers = {"kid": self.kid if kid == "" else kid} if kid is not None else {}
        payload = {"exp": int(time.time()) + 3600, **claims}
        return jwt.encode(payload, self.private, algorithm=alg or self.alg, headers=headers)


@dataclass
class IdentityProvider:
    keys: list[SigningKey]
    fetches: int = 0
    # What the JWKS endpoint answers: "keys", "error" (500), "garbage" (not JSON), "malformed" (no key list).
    mode: str = "keys"
    url: str = ""
    hits: list[float] = field(default_factory=list)

    def app(self) -> web.Application:
        async def jwks(_: web.Request) -> web.Response:
            self.fetches += 1
            self.hits.append(time.monotonic())
            if self.mode == "error":
                return web.Response(status=500)
            if self.mode == "garbage":
                return web.Response(text="<html>not json</html>")
            if self.mode == "malformed":
                return web.json_response({"keys": "none"})
            return web.json_response({"keys": [key.public_jwk() for key in self.keys]})

        app = web.Application()
        app.router.add_get("/jwks.json", jwks)
        return app


async def serve_identity_provider(
    keys: list[SigningKey], tls: ssl.SSLContext | None = None
) -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider(keys)
    server = TestServer(provider.app(), host="127.0.0.1")
    await server.start_server(ssl=tls)
    provider.url = str(server.make_url("/jwks.json"))
    try:
        yield provider
    finally:
        await server.close()


def jwk_auth(url: str, **jwk_config: Any) -> dict[str, Any]:
    """The `authentication` section for jwk-token against `url`."""
    return {"module": "jwk-token", "jwk_config": {"url": url, **jwk_config}}
