"""Authentication modules and the admin role."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lightspeed_common.errors import ConfigError
from tests.conftest import ClientFactory, StartupFailure

KEYS = [
    {"key": "user-key-0123456789", "user_id": "alice", "role": "user"},
    {"key": "admin-key-0123456789", "user_id": "root-admin", "role": "admin"},
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_noop_uses_the_query_user_or_the_default(client: Any) -> None:
    """noop: ?user_id= names the user; conversations of that user are refused to the default user."""
    first = await (await client.post("/v1/query?user_id=alice", json={"query": "start"})).json()
    resp = await client.post("/v1/query", json={"query": "x", "conversation_id": first["conversation_id"]})
    assert resp.status == 403


async def test_noop_with_token_requires_a_bearer_header(make_client: ClientFactory, make_config: Any) -> None:
    """noop-with-token: 401 without a Bearer header, served with one."""
    client = await make_client(make_config(authentication={"module": "noop-with-token"}))
    missing = await client.post("/v1/query", json={"query": "start"})
    assert missing.status == 401
    assert await missing.json() == {
        "detail": {
            "response": "Missing or invalid credentials provided by client",
            "cause": "No Authorization header found",
        },
    }
    wrong_scheme = await client.post("/v1/query", json={"query": "start"}, headers={"Authorization": "Basic abc"})
    assert wrong_scheme.status == 401
    ok = await client.post("/v1/query", json={"query": "start"}, headers=bearer("anything"))
    assert ok.status == 200


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "api-keys.yaml"
    path.write_text(yaml.safe_dump(KEYS))
    return path


async def test_api_keys_map_to_users_and_roles(make_client: ClientFactory, make_config: Any, keys_file: Path) -> None:
    """api-key: a known key is its user; an unknown one is 401; only the admin key may PUT the status."""
    client = await make_client(
        make_config(authentication={"module": "api-key", "api_key": {"keys_file": str(keys_file)}})
    )
    assert (await client.post("/v1/query", json={"query": "start"})).status == 401
    bad = await client.post("/v1/query", json={"query": "start"}, headers=bearer("nope-0123456789"))
    assert bad.status == 401
    assert (await bad.json())["detail"]["cause"] == "Invalid API key"
    asked = await client.post("/v1/query", json={"query": "start"}, headers=bearer("user-key-0123456789"))
    assert asked.status == 200
    conversation_id = (await asked.json())["conversation_id"]
    # ?user_id= is ignored under api-key: the key decides who you are.
    spoof = await client.post(
        "/v1/query?user_id=root-admin",
        json={"query": "x", "conversation_id": conversation_id},
        headers=bearer("user-key-0123456789"),
    )
    assert spoof.status == 200
    denied = await client.put("/v1/feedback/status", json={"status": False}, headers=bearer("user-key-0123456789"))
    assert denied.status == 403
    assert (await denied.json())["detail"] == {
        "response": "User does not have permission to access this endpoint",
        "cause": "User alice is not authorized to access this endpoint.",
    }
    allowed = await client.put("/v1/feedback/status", json={"status": False}, headers=bearer("admin-key-0123456789"))
    assert allowed.status == 200
    assert (await allowed.json())["status"]["updated_by"] == "root-admin"
    # The status itself is public, as in lightspeed-stack.
    assert (await client.get("/v1/feedback/status")).status == 200


async def test_api_keys_from_systemd_credentials(
    make_client: ClientFactory, make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no keys_file the keys come from $CREDENTIALS_DIRECTORY/<credential>."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "lightspeed-api-keys").write_text(yaml.safe_dump(KEYS))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    client = await make_client(make_config(authentication={"module": "api-key"}))
    resp = await client.post("/v1/query", json={"query": "start"}, headers=bearer("admin-key-0123456789"))
    assert resp.status == 200


async def test_api_key_module_without_keys_fails_start_up(
    startup_failure: StartupFailure, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    error = await startup_failure(make_config(authentication={"module": "api-key"}))
    assert isinstance(error, ConfigError)
    assert "no keys_file or credential" in str(error)


@pytest.mark.parametrize(
    "content",
    ["{}", "- user_id: a", "- {key: k, user_id: a, role: root}", "- {key: ' ', user_id: a}"],
)
async def test_malformed_keys_files_are_refused_without_echoing_keys(
    startup_failure: StartupFailure, make_config: Any, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(content)
    error = await startup_failure(
        make_config(authentication={"module": "api-key", "api_key": {"keys_file": str(path)}})
    )
    assert isinstance(error, ConfigError)
    assert "authentication.api_key" in str(error)
    assert "k," not in str(error)


@pytest.mark.parametrize(
    ("content", "rules", "message"),
    [
        ("- {key: k1, user_id: a, role: root}", [], "entry 0: role must be user or admin, not root"),
        (
            "- {key: k1, user_id: a, roles: [viewer, ghost]}",
            [{"role": "viewer", "actions": ["info"]}],
            "no access rule names ghost",
        ),
        ("- {key: k1, user_id: a, roles: []}", [], "entry 0: roles must be a non-empty list"),
    ],
)
async def test_key_roles_must_be_ones_the_policy_knows(
    startup_failure: StartupFailure, make_config: Any, tmp_path: Path, content: str, rules: list[Any], message: str
) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(content)
    auth = {"module": "api-key", "api_key": {"keys_file": str(path)}}
    error = await startup_failure(make_config(authentication=auth, authorization={"access_rules": rules}))
    assert isinstance(error, ConfigError)
    assert message in str(error)


EVIL = {"Host": "evil.example:8080", "Origin": "http://evil.example:8080"}


async def test_a_rebound_host_cannot_change_state_or_open_pages(client: Any) -> None:
    """DNS rebinding: a page on evil.example resolved to 127.0.0.1 is refused (421), same-origin or not."""
    put = await client.put("/v1/feedback/status", json={"status": False}, headers=EVIL)
    page = await client.get("/settings", headers={"Host": "evil.example"})
    status = await (await client.get("/v1/feedback/status")).json()
    assert put.status == 421
    assert (await put.json())["detail"]["response"] == "Host not allowed"
    assert page.status == 421
    assert status["status"]["enabled"] is True
    for host in ("localhost:8080", "127.0.0.1", "[::1]:8080"):
        resp = await client.put("/v1/feedback/status", json={"status": True}, headers={"Host": host})
        assert resp.status == 200, host


async def test_allowed_hosts_can_name_the_site_or_allow_any(make_client: ClientFactory, make_config: Any) -> None:
    named = await make_client(make_config(service={"allowed_hosts": ["assistant.example.com"]}))
    assert (await named.get("/settings", headers={"Host": "assistant.example.com"})).status == 200
    assert (await named.get("/settings", headers={"Host": "localhost"})).status == 421
    public = await make_client(make_config(service={"host": "0.0.0.0"}))
    assert (await public.get("/settings", headers={"Host": "assistant.example.com"})).status == 200


async def test_the_ingest_refuses_a_rebound_host(make_ingest: Any) -> None:
    ingest = await make_ingest()
    assert (await ingest.get("/admin", headers={"Host": "evil.example"})).status == 421
    assert (await ingest.get("/liveness", headers={"Host": "localhost:8090"})).status == 200
