"""Who may call what: every route of both daemons, called without a credential, with a user's and an admin's.

The tables below are the access policy. A route added to a daemon without a
row here fails `test_every_route_has_a_row`, so nobody adds one without
deciding who may call it.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.conftest import ClientFactory, ConfigFactory
from tests.ingest_support import ADMIN_KEY, TOKEN, IngestFactory

USER_KEY, ADMIN_API_KEY = "user-key-0123456789", "admin-key-0123456789"

# public: anyone; user: any valid credential; admin: the admin role (or the ingest's admin key).
# A call is "refused" when it answers 401 or 403; any other status means the handler let it through.
# The server's rows also name the route's action (None: any caller), which access rules grant to roles.
SERVER_ROUTES = {
    ("POST", "/v1/query"): ("user", "query"),
    ("POST", "/v1/streaming_query"): ("user", "streaming_query"),
    ("POST", "/v1/streaming_query/interrupt"): ("user", "streaming_query"),
    ("GET", "/v1/config"): ("admin", "get_config"),
    ("GET", "/v1/providers"): ("user", "list_providers"),
    ("GET", "/v1/providers/{provider_id}"): ("user", "get_provider"),
    ("GET", "/v1/shields"): ("user", "get_shields"),
    ("GET", "/v1/tools"): ("user", "get_tools"),
    ("POST", "/v1/feedback"): ("user", "feedback"),
    ("GET", "/v1/feedback/status"): ("public", None),
    ("PUT", "/v1/feedback/status"): ("admin", "manage_feedback"),
    ("GET", "/v1/models"): ("user", "get_models"),
    ("GET", "/v1/embedding-models"): ("admin", "get_embedding_models"),
    ("POST", "/v1/embedding-models"): ("admin", "manage_embedding_models"),
    ("PUT", "/v1/embedding-models/active"): ("admin", "manage_embedding_models"),
    ("DELETE", "/v1/embedding-models/active"): ("public", None),  # 405 for anyone
    ("DELETE", "/v1/embedding-models/{model_name}"): ("admin", "manage_embedding_models"),
    ("GET", "/v1/telemetry"): ("admin", "get_telemetry"),
    ("PUT", "/v1/telemetry"): ("admin", "manage_telemetry"),
    ("GET", "/v1/telemetry/consent"): ("user", "info"),
    ("GET", "/v1/telemetry/queue"): ("admin", "get_telemetry"),
    ("DELETE", "/v1/telemetry/queue"): ("admin", "manage_telemetry"),
    ("POST", "/v1/telemetry/send"): ("admin", "manage_telemetry"),
    ("POST", "/v1/telemetry/deletion-request"): ("admin", "manage_telemetry"),
    ("GET", "/settings"): ("admin", "view_settings"),
    ("GET", "/settings/{asset}"): ("admin", "view_settings"),
    ("GET", "/liveness"): ("public", None),
    ("GET", "/readiness"): ("public", None),
    ("GET", "/metrics"): ("public", None),
    ("GET", "/openapi.json"): ("public", None),
    ("DELETE", "/v1/users/me/data"): ("user", None),
    ("GET", "/v1/audit"): ("admin", "admin"),
    ("GET", "/v1/users/me/data"): ("user", None),
    ("GET", "/v1/users/{user_id}/data"): ("admin", "admin"),
    ("DELETE", "/v1/users/{user_id}/data"): ("admin", "admin"),
    ("GET", "/"): ("user", "info"),
    ("POST", "/authorized"): ("user", None),
    ("GET", "/v1/info"): ("user", "info"),
    ("GET", "/v1/conversations"): ("user", "list_conversations"),
    ("GET", "/v1/conversations/{conversation_id}"): ("user", "get_conversation"),
    ("PUT", "/v1/conversations/{conversation_id}"): ("user", "update_conversation"),
    ("DELETE", "/v1/conversations/{conversation_id}"): ("user", "delete_conversation"),
    ("GET", "/v2/conversations"): ("user", "list_conversations"),
    ("GET", "/v2/conversations/{conversation_id}"): ("user", "get_conversation"),
    ("PUT", "/v2/conversations/{conversation_id}"): ("user", "update_conversation"),
    ("DELETE", "/v2/conversations/{conversation_id}"): ("user", "delete_conversation"),
}

# For the ingest, "user" is a collector's upload token; "user_only": the admin key is not one.
INGEST_ROUTES = {
    ("POST", "/api/ingress/v1/upload"): "user_only",
    ("POST", "/api/v1/telemetry"): "public",
    ("DELETE", "/api/v1/telemetry/clients/{client_id}"): "public",
    ("GET", "/api/admin/v1/models"): "admin",
    ("GET", "/api/admin/v1/uploads"): "admin",
    ("GET", "/api/admin/v1/deletions"): "admin",
    ("POST", "/api/admin/v1/deletions"): "admin",
    ("GET", "/api/admin/v1/erasures"): "admin",
    ("POST", "/api/admin/v1/erasures"): "admin",
    ("GET", "/api/admin/v1/feedback"): "admin",
    ("GET", "/api/admin/v1/conversations/{conversation_id}/transcripts"): "admin",
    ("GET", "/api/admin/v1/insights"): "admin",
    ("GET", "/api/admin/v1/insights/{chart}.svg"): "admin",
    ("GET", "/admin"): "admin",
    ("GET", "/admin/{asset}"): "admin",
    ("GET", "/liveness"): "public",
    ("GET", "/readiness"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/openapi.json"): "public",
}

SAMPLE = {
    "{conversation_id}": "9d5c7e0c-1a51-4e0e-9c39-5d1f8e7a2b10",
    "{model_name}": "some-model",
    "{provider_id}": "local",
    "{asset}": "page.js",
    "{client_id}": "0f3b8e0c-6a51-4e0e-9c39-5d1f8e7a2b10",
    "{user_id}": "someone",
    "{chart}": "feedback",
}


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = route.resource.canonical
        for template in ("{model_name}", "{asset}", "{client_id}"):
            name = template.strip("{}")
            path = path.replace(f"{{{name}:.+}}", template)
        found.add((route.method, path))
    return found


def concrete(path: str) -> str:
    for template, value in SAMPLE.items():
        path = path.replace(template, value)
    return path


def expected_ok(access: str, who: str) -> bool:
    return (
        access == "public"
        or (access == "user" and who != "none")
        or (access == "user_only" and who == "user")
        or (access == "admin" and who == "admin")
    )


async def check_access(client: Any, table: dict[tuple[str, str], str], credentials: dict[str, str | None]) -> None:
    wrong = []
    for (method, path), access in sorted(table.items()):
        for who, key in credentials.items():
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            resp = await client.request(method, concrete(path), json={}, headers=headers)
            refused = resp.status in (401, 403)
            if refused == expected_ok(access, who):
                wrong.append(f"{method} {path} as {who}: {resp.status} (policy: {access})")
    assert wrong == []


@pytest.fixture
def server_config(make_config: ConfigFactory, tmp_path: Any) -> Any:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        yaml.safe_dump(
            [
                {"key": USER_KEY, "user_id": "alice", "role": "user"},
                {"key": ADMIN_API_KEY, "user_id": "op", "role": "admin"},
            ]
        )
    )
    return make_config(authentication={"module": "api-key", "api_key": {"keys_file": str(keys)}})


async def test_every_route_has_a_row(
    make_client: ClientFactory, server_config: Any, make_ingest: IngestFactory
) -> None:
    server = await make_client(server_config)
    ingest = await make_ingest()
    assert routes_of(server.app) == set(SERVER_ROUTES)
    assert routes_of(ingest.app) == set(INGEST_ROUTES)


async def test_server_routes_follow_the_access_policy(make_client: ClientFactory, server_config: Any) -> None:
    client = await make_client(server_config)
    levels = {route: level for route, (level, _) in SERVER_ROUTES.items()}
    await check_access(client, levels, {"none": None, "user": USER_KEY, "admin": ADMIN_API_KEY})


# Access rules of a site's own: roles to actions, `*` for every caller, `admin` for everything.
ACCESS_RULES = [
    {"role": "viewer", "actions": ["list_conversations", "get_conversation", "info"]},
    {"role": "operator", "actions": ["admin"]},
    {"role": "*", "actions": ["get_models"]},
]
ROLE_KEYS = {"viewer": "viewer-key-0123456789", "operator": "operator-key-0123456789", "user": USER_KEY}


def allowed_by_rules(level: str, action: str | None, role: str | None) -> bool:
    if level == "public":
        return True
    if role is None:
        return False
    granted = {action for rule in ACCESS_RULES if rule["role"] in (role, "*") for action in rule["actions"]}
    return action is None or "admin" in granted or action in granted


async def test_access_rules_decide_every_route_for_every_role(
    make_client: ClientFactory, make_config: ConfigFactory, tmp_path: Any
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump([{"key": key, "user_id": role, "role": role} for role, key in ROLE_KEYS.items()]))
    auth = {"module": "api-key", "api_key": {"keys_file": str(keys)}}
    client = await make_client(make_config(authentication=auth, authorization={"access_rules": ACCESS_RULES}))
    wrong = []
    for (method, path), (level, action) in sorted(SERVER_ROUTES.items()):
        for role in (None, *ROLE_KEYS):
            headers = {"Authorization": f"Bearer {ROLE_KEYS[role]}"} if role else {}
            resp = await client.request(method, concrete(path), json={}, headers=headers)
            if (resp.status in (401, 403)) == allowed_by_rules(level, action, role):
                wrong.append(f"{method} {path} as {role}: {resp.status} (action: {action})")
    assert wrong == []


async def test_ingest_routes_follow_the_access_policy(make_ingest: IngestFactory) -> None:
    # The upload token is a wrong admin key on the admin routes: allow more than the default 5 of those.
    client = await make_ingest(admin_wrong_keys_burst=100)
    await check_access(client, INGEST_ROUTES, {"none": None, "user": TOKEN, "admin": ADMIN_KEY})
