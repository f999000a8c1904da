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
SERVER_ROUTES = {
    ("POST", "/v1/query"): "user",
    ("POST", "/v1/streaming_query"): "user",
    ("POST", "/v1/streaming_query/interrupt"): "user",
    ("GET", "/v1/config"): "admin",
    ("GET", "/v1/providers"): "user",
    ("GET", "/v1/providers/{provider_id}"): "user",
    ("GET", "/v1/shields"): "user",
    ("GET", "/v1/tools"): "user",
    ("POST", "/v1/feedback"): "user",
    ("GET", "/v1/feedback/status"): "public",
    ("PUT", "/v1/feedback/status"): "admin",
    ("GET", "/v1/models"): "user",
    ("GET", "/v1/embedding-models"): "admin",
    ("POST", "/v1/embedding-models"): "admin",
    ("PUT", "/v1/embedding-models/active"): "admin",
    ("DELETE", "/v1/embedding-models/active"): "public",  # 405 for anyone
    ("DELETE", "/v1/embedding-models/{model_name}"): "admin",
    ("GET", "/v1/telemetry"): "admin",
    ("PUT", "/v1/telemetry"): "admin",
    ("GET", "/v1/telemetry/consent"): "user",
    ("GET", "/v1/telemetry/queue"): "admin",
    ("DELETE", "/v1/telemetry/queue"): "admin",
    ("POST", "/v1/telemetry/send"): "admin",
    ("POST", "/v1/telemetry/deletion-request"): "admin",
    ("GET", "/settings"): "admin",
    ("GET", "/settings/{asset}"): "admin",
    ("GET", "/liveness"): "public",
    ("GET", "/readiness"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/openapi.json"): "public",
    ("GET", "/"): "user",
    ("POST", "/authorized"): "user",
    ("GET", "/v1/info"): "user",
    ("GET", "/v1/conversations"): "user",
    ("GET", "/v1/conversations/{conversation_id}"): "user",
    ("PUT", "/v1/conversations/{conversation_id}"): "user",
    ("DELETE", "/v1/conversations/{conversation_id}"): "user",
    ("GET", "/v2/conversations"): "user",
    ("GET", "/v2/conversations/{conversation_id}"): "user",
    ("PUT", "/v2/conversations/{conversation_id}"): "user",
    ("DELETE", "/v2/conversations/{conversation_id}"): "user",
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
    await check_access(client, SERVER_ROUTES, {"none": None, "user": USER_KEY, "admin": ADMIN_API_KEY})


async def test_ingest_routes_follow_the_access_policy(make_ingest: IngestFactory) -> None:
    # The upload token is a wrong admin key on the admin routes: allow more than the default 5 of those.
    client = await make_ingest(admin_wrong_keys_burst=100)
    await check_access(client, INGEST_ROUTES, {"none": None, "user": TOKEN, "admin": ADMIN_KEY})
