"""jwk-token: tokens from an identity provider checked against its JWKS (served on 127.0.0.1 by the
test), lightspeed-stack's 401 texts, the key set's cache and its bounded refresh."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest

from lightspeed.api.state import SERVER
from lightspeed.jwk import VERIFIED_TOKENS
from tests.conftest import ClientFactory, ConfigFactory, StartupFailure
from tests.fake_llm import free_port
from tests.jwks import IdentityProvider, SigningKey, jwk_auth, serve_identity_provider
from tests.lightspeed.test_stack_contract import check
from tests.tls_support import PrivateCA

CLAIMS = {"user_id": "u-1234", "username": "alice"}


def refused(cause: str) -> dict[str, Any]:
    return {"detail": {"response": "Missing or invalid credentials provided by client", "cause": cause}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey.rsa("rsa-1")


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey.ec("ec-1")


@pytest.fixture
async def idp(rsa_key: SigningKey, ec_key: SigningKey) -> AsyncIterator[IdentityProvider]:
    async for provider in serve_identity_provider([rsa_key, ec_key]):
        yield provider


async def test_rs256_and_es256_tokens_name_the_user(
    make_client: ClientFactory,
    make_config: ConfigFactory,
    idp: IdentityProvider,
    rsa_key: SigningKey,
    ec_key: SigningKey,
) -> None:
    client = await make_client(make_config(authentication=jwk_auth(idp.url)))
    for key in (rsa_key, ec_key):
        resp = await client.post("/authorized", headers=bearer(key.sign(CLAIMS)))
        assert await resp.json() == {"user_id": "u-1234", "username": "alice", "skip_userid_check": False}
    # Claims named by the configuration, and the key found by algorithm when the token names no kid.
    config = make_config(
        authentication=jwk_auth(idp.url, jwt_configuration={"user_id_claim": "sub", "username_claim": "email"})
    )
    client = await make_client(config)
    token = ec_key.sign({"sub": "s-9", "email": "bob@example.com"}, kid=None)
    resp = await client.post("/authorized", headers=bearer(token))
    assert (await resp.json())["user_id"] == "s-9"
    assert idp.fetches == 2  # once per server: every later request used the cached set


async def test_bad_tokens_get_lightspeed_stacks_401s(
    make_client: ClientFactory, make_config: ConfigFactory, idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    config = make_config(authentication=jwk_auth(idp.url, leeway_seconds=30, audience="lightspeed"))
    client = await make_client(config)
    now = int(time.time())
    ok = {**CLAIMS, "aud": "lightspeed"}
    forger = SigningKey.rsa("rsa-1")  # the published key id, another private key
    cases = {
        "": "No Authorization header found",
        "Basic YTpi": "No token found in Authorization header",
        "Bearer": "No token found in Authorization header",
        "Bearer not.a.token": "Token could not be decoded",
        "Bearer " + forger.sign(ok): "Invalid token signature",
        "Bearer " + rsa_key.sign(ok, kid="unknown-kid"): "Token signed by unknown key",
        "Bearer " + rsa_key.sign({**ok, "exp": now - 120}): "Token has expired",
        "Bearer " + rsa_key.sign({**ok, "nbf": now + 600}): "Token validation failed",
        "Bearer " + rsa_key.sign({**ok, "aud": "another-service"}): "Token validation failed",
        "Bearer " + rsa_key.sign({"username": "alice", "aud": "lightspeed"}): "Token missing claim: user_id",
        "Bearer " + rsa_key.sign({"user_id": "u-1", "aud": "lightspeed"}): "Token missing claim: username",
        # Algorithms this server does not accept: an HMAC (anyone with the public key could sign), and none.
        "Bearer " + jwt.encode({**ok, "exp": now + 60}, "k" * 32, algorithm="HS256"): "Token signed by unknown key",
        "Bearer " + jwt.encode({**ok, "exp": now + 60}, None, algorithm="none"): "Token signed by unknown key",
    }
    for header, cause in cases.items():
        resp = await client.get("/v1/conversations", headers={"Authorization": header} if header else {})
        assert (resp.status, await resp.json()) == (401, refused(cause)), header[:40]
    # Within the leeway, an expired token still passes.
    resp = await client.get("/v1/conversations", headers=bearer(rsa_key.sign({**ok, "exp": now - 5})))
    assert resp.status == 200


async def test_an_unreachable_or_broken_key_server_is_named(
    make_client: ClientFactory, make_config: ConfigFactory, idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    token = rsa_key.sign(CLAIMS)
    nowhere = f"http://127.0.0.1:{free_port()}/jwks.json"
    client = await make_client(make_config(authentication=jwk_auth(nowhere, refresh_interval_seconds=0.01)))
    resp = await client.get("/v1/info", headers=bearer(token))
    assert (resp.status, await resp.json()) == (401, refused("Unable to reach authentication key server"))
    for mode, cause in (
        ("error", "Unable to reach authentication key server"),
        ("garbage", "Authentication key server returned invalid data"),
        ("malformed", "Authentication keys are malformed"),
    ):
        idp.mode = mode
        client = await make_client(make_config(authentication=jwk_auth(idp.url)))
        resp = await client.get("/v1/info", headers=bearer(token))
        assert (resp.status, await resp.json()) == (401, refused(cause)), mode


async def test_forged_key_ids_cause_no_fetches_within_the_interval(
    make_client: ClientFactory, make_config: ConfigFactory, idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    client = await make_client(make_config(authentication=jwk_auth(idp.url, refresh_interval_seconds=3600)))
    # Twenty first requests at once: one fetch between them.
    answers = await asyncio.gather(*(client.get("/v1/info", headers=bearer(rsa_key.sign(CLAIMS))) for _ in range(20)))
    assert [a.status for a in answers] == [200] * 20
    assert idp.fetches == 1
    for n in range(50):
        resp = await client.get("/v1/info", headers=bearer(rsa_key.sign(CLAIMS, kid=f"forged-{n}")))
        assert resp.status == 401
    assert idp.fetches == 1


async def test_a_rotated_key_is_fetched_once_the_interval_allows(
    make_client: ClientFactory, make_config: ConfigFactory, idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    interval = 0.5
    client = await make_client(make_config(authentication=jwk_auth(idp.url, refresh_interval_seconds=interval)))
    assert (await client.get("/v1/info", headers=bearer(rsa_key.sign(CLAIMS)))).status == 200
    rotated = SigningKey.rsa("rsa-2")
    idp.keys = [rotated]
    token = rotated.sign(CLAIMS)
    deadline = time.monotonic() + 30
    statuses = []
    while time.monotonic() < deadline:
        resp = await client.get("/v1/info", headers=bearer(token))
        statuses.append(resp.status)
        if resp.status == 200:
            break
        await asyncio.sleep(0.05)  # pacing the retries of a client; the event waited on is the 200
    assert statuses[-1] == 200
    # Every fetch after the first was at least the interval after the one before.
    gaps = [later - earlier for earlier, later in zip(idp.hits, idp.hits[1:], strict=False)]
    assert gaps
    assert all(gap >= interval * 0.9 for gap in gaps), gaps


async def test_a_failed_refresh_keeps_the_keys_held(
    make_client: ClientFactory, make_config: ConfigFactory, idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    config = make_config(authentication=jwk_auth(idp.url, cache_seconds=0.01, refresh_interval_seconds=0.01))
    client = await make_client(config)
    assert (await client.get("/v1/info", headers=bearer(rsa_key.sign(CLAIMS)))).status == 200
    idp.mode = "error"
    fetched, deadline = idp.fetches, time.monotonic() + 30
    while idp.fetches == fetched and time.monotonic() < deadline:  # the expired set is fetched again and fails
        resp = await client.get("/v1/info", headers=bearer(rsa_key.sign(CLAIMS)))
        assert resp.status == 200
        await asyncio.sleep(0.02)
    assert idp.fetches > fetched
    assert (await client.get("/v1/info", headers=bearer(rsa_key.sign(CLAIMS)))).status == 200


# A site's rules: roles from the identity provider's group claim, actions per role.
SITE_ROLE_RULES = [
    {"jsonpath": "$.groups[*]", "operator": "contains", "value": "lightspeed-admins", "roles": ["admin"]},
    {"jsonpath": "$.groups[*]", "operator": "contains", "value": "lightspeed-viewers", "roles": ["viewer"]},
]
SITE_ACCESS_RULES = [
    {"role": "viewer", "actions": ["list_conversations", "get_conversation", "info"]},
    {"role": "admin", "actions": ["admin"]},
]


def site_config(make_config: ConfigFactory, idp: IdentityProvider) -> Any:
    return make_config(
        authentication=jwk_auth(idp.url, jwt_configuration={"role_rules": SITE_ROLE_RULES}),
        authorization={"access_rules": SITE_ACCESS_RULES},
    )


async def test_roles_from_claims_decide_what_a_token_may_do(
    make_client: ClientFactory, make_config: ConfigFactory, idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    client = await make_client(site_config(make_config, idp))
    viewer = bearer(rsa_key.sign({"user_id": "v-1", "username": "vera", "groups": ["staff", "lightspeed-viewers"]}))
    admin = bearer(rsa_key.sign({"user_id": "a-1", "username": "ada", "groups": ["lightspeed-admins"]}))
    nobody = bearer(rsa_key.sign({"user_id": "n-1", "username": "ned", "groups": ["staff"]}))
    question = {"query": "How do I start the server?"}
    resp = await client.post("/v1/query", json=question, headers=viewer)
    assert (resp.status, await resp.json()) == (
        403,
        {
            "detail": {
                "response": "User does not have permission to access this endpoint",
                "cause": "User v-1 is not authorized to access this endpoint.",
            }
        },
    )
    assert (await client.get("/v1/conversations", headers=viewer)).status == 200
    assert (await client.get("/v1/conversations", headers=nobody)).status == 403
    asked = await client.post("/v1/query", json=question, headers=admin)
    assert asked.status == 200
    # The admin action is every action: the admin lists everyone's conversations, the viewer only its own.
    cid = (await asked.json())["conversation_id"]
    listed = await (await client.get("/v1/conversations", headers=admin)).json()
    assert [c["conversation_id"] for c in listed["conversations"]] == [cid]
    assert (await (await client.get("/v1/conversations", headers=viewer)).json())["conversations"] == []
    denied = await client.get(f"/v1/conversations/{cid}", headers=viewer)
    assert denied.status == 403


async def test_without_both_rule_sets_every_token_is_a_user(
    make_client: ClientFactory, make_config: ConfigFactory, idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    # Access rules without role rules: lightspeed-stack applies neither; every caller has the user actions.
    config = make_config(authentication=jwk_auth(idp.url), authorization={"access_rules": SITE_ACCESS_RULES})
    client = await make_client(config)
    token = bearer(rsa_key.sign({**CLAIMS, "groups": ["lightspeed-admins"]}))
    assert (await client.post("/v1/query", json={"query": "Start?"}, headers=token)).status == 200
    assert (await client.get("/v1/telemetry", headers=token)).status == 403


async def test_a_model_override_needs_its_action(
    make_client: ClientFactory, make_config: ConfigFactory, idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    rules = [{"role": "asker", "actions": ["query"]}]
    role_rules = [{"jsonpath": "$.user_id", "operator": "equals", "value": ["u-1234"], "roles": ["asker"]}]
    config = make_config(
        authentication=jwk_auth(idp.url, jwt_configuration={"role_rules": role_rules}),
        authorization={"access_rules": rules},
    )
    client = await make_client(config)
    token = bearer(rsa_key.sign(CLAIMS))
    assert (await client.post("/v1/query", json={"query": "Start?"}, headers=token)).status == 200
    resp = await client.post(
        "/v1/query", json={"query": "Start?", "provider": "local", "model": "local-extractive"}, headers=token
    )
    assert (resp.status, await resp.json()) == (
        403,
        {
            "detail": {
                "response": "This instance does not permit overriding model/provider in the query request "
                "(missing permission: model_override). Please remove the model and provider fields from your request.",
                "cause": "User lacks model_override permission required to override model/provider.",
            }
        },
    )


async def test_the_configuration_shows_the_rules_in_lightspeed_stacks_shape(
    make_client: ClientFactory, make_config: ConfigFactory, idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    client = await make_client(site_config(make_config, idp))
    admin = bearer(rsa_key.sign({"user_id": "a-1", "username": "ada", "groups": ["lightspeed-admins"]}))
    resp = await client.get("/v1/config", headers=admin)
    raw = await resp.read()
    assert check("GET", "/v1/config", resp.status, "application/json", raw) == []
    shown = json.loads(raw)["configuration"]
    rules = [{**rule, "negate": False} for rule in SITE_ROLE_RULES]
    assert shown["authentication"] == {
        "module": "jwk-token",
        "jwk_config": {
            "url": idp.url,
            "jwt_configuration": {"user_id_claim": "user_id", "username_claim": "username", "role_rules": rules},
        },
    }
    assert shown["authorization"] == {"access_rules": SITE_ACCESS_RULES}


async def test_an_identity_provider_behind_a_private_ca(
    make_client: ClientFactory, make_config: ConfigFactory, rsa_key: SigningKey, private_ca: PrivateCA
) -> None:
    async for idp in serve_identity_provider([rsa_key], tls=private_ca.server_context()):
        assert idp.url.startswith("https://")
        trusted = make_config(authentication=jwk_auth(idp.url, tls={"ca_file": str(private_ca.ca_file)}))
        resp = await (await make_client(trusted)).get("/v1/info", headers=bearer(rsa_key.sign(CLAIMS)))
        assert resp.status == 200
        untrusted = await make_client(make_config(authentication=jwk_auth(idp.url)))
        resp = await untrusted.get("/v1/info", headers=bearer(rsa_key.sign(CLAIMS)))
        assert (resp.status, await resp.json()) == (401, refused("Unable to reach authentication key server"))
        assert idp.fetches == 1  # the untrusted server never completed a fetch


async def test_an_unreadable_ca_file_for_the_key_server_stops_the_start(
    startup_failure: StartupFailure, make_config: ConfigFactory
) -> None:
    config = make_config(authentication=jwk_auth("https://idp.example/jwks", tls={"ca_file": "/nonexistent/ca.pem"}))
    error = await startup_failure(config)
    assert "authentication.jwk_config.tls.ca_file: cannot load CA certificates" in str(error)


async def test_a_token_that_checked_out_is_not_checked_again_until_something_changes(
    make_client: ClientFactory, make_config: ConfigFactory, idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    """The same token again costs no signature check; its expiry is still checked each time, and a key set
    without its key refuses it (the token stays remembered for neither)."""
    config = make_config(
        authentication=jwk_auth(idp.url, leeway_seconds=0, cache_seconds=3600, refresh_interval_seconds=0.01)
    )
    client = await make_client(config)
    auth = client.app[SERVER].auth
    token = rsa_key.sign(CLAIMS)
    for _ in range(5):
        resp = await client.post("/authorized", headers=bearer(token))
        assert (await resp.json())["user_id"] == "u-1234"
    assert (auth.signature_checks, auth.remembered) == (1, 1)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")  # another signature, same claims
    resp = await client.post("/authorized", headers=bearer(tampered))
    assert (resp.status, await resp.json()) == (401, refused("Invalid token signature"))
    assert auth.remembered == 1  # a token that fails is never remembered

    # Expiry: a token valid for a second more works, then gets lightspeed-stack's 401 without a new check.
    expiring = rsa_key.sign({**CLAIMS, "exp": int(time.time()) + 1})
    assert (await client.post("/authorized", headers=bearer(expiring))).status == 200
    checks, deadline = auth.signature_checks, time.monotonic() + 30
    while (resp := await client.post("/authorized", headers=bearer(expiring))).status == 200:
        assert time.monotonic() < deadline, "an expired token was still accepted"
        await asyncio.sleep(0.05)  # pacing a client's requests; the event waited on is the 401
    assert await resp.json() == refused("Token has expired")
    assert (auth.signature_checks, auth.remembered) == (checks, 1)

    # The key set is fetched again without the token's key: refused, although it was remembered.
    idp.keys = [SigningKey.rsa("rsa-2")]
    auth.keys._fetched_at = None  # as when cache_seconds has run out
    resp = await client.post("/authorized", headers=bearer(token))
    assert (resp.status, await resp.json()) == (401, refused("Token signed by unknown key"))
    assert auth.remembered == 0


async def test_the_verified_tokens_are_bounded_and_a_new_key_set_means_a_new_check(
    make_client: ClientFactory, make_config: ConfigFactory, idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    config = make_config(authentication=jwk_auth(idp.url, cache_seconds=3600, refresh_interval_seconds=0.01))
    client = await make_client(config)
    auth = client.app[SERVER].auth
    tokens = [rsa_key.sign({**CLAIMS, "user_id": f"u-{n}"}) for n in range(VERIFIED_TOKENS + 5)]
    for token in tokens:
        assert (await client.get("/v1/info", headers=bearer(token))).status == 200
    assert auth.remembered == VERIFIED_TOKENS
    checks = auth.signature_checks
    oldest_held = tokens[5]
    assert (await client.get("/v1/info", headers=bearer(oldest_held))).status == 200
    assert auth.signature_checks == checks  # held, and now the most recently used
    assert (await client.get("/v1/info", headers=bearer(tokens[0]))).status == 200
    assert auth.signature_checks == checks + 1  # forgotten; remembered again in place of the least recently used
    for token in (oldest_held, tokens[-1], tokens[0]):
        assert (await client.get("/v1/info", headers=bearer(token))).status == 200
    assert auth.signature_checks == checks + 1
    assert (await client.get("/v1/info", headers=bearer(tokens[6]))).status == 200
    assert auth.signature_checks == checks + 2  # that was tokens[6]

    # The same key, fetched again: a token is checked in full once more, then remembered again.
    auth.keys._fetched_at = None
    assert (await client.get("/v1/info", headers=bearer(tokens[-1]))).status == 200
    assert (await client.get("/v1/info", headers=bearer(tokens[-1]))).status == 200
    assert auth.signature_checks == checks + 3
