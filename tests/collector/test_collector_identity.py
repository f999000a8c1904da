"""The collector's identity modes (manual, openshift, sso) against a real token endpoint and a real
ingress on 127.0.0.1, and the User-Agent the ingress's auth proxy reads the identity from."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web

from collector.commands import status
from collector.daemon import Collector
from lightspeed_common.errors import ConfigError
from tests.collector.conftest import CollectorConfig
from tests.collector.test_collector import remaining, write_records
from tests.ingest_support import TOKEN as INGEST_TOKEN
from tests.ingest_support import IngestFactory
from tests.ingress import Ingress, Reply

SECRET = "sso-client-secret-0123456789"
EXPORTER_AGENT = "openshift-lightspeed-operator/user-data-collection cluster/{}"


@dataclass
class TokenEndpoint:
    """An OAuth2 token endpoint (client credentials) and an access_token exchange, recording each call."""

    expires_in: float = 3600
    status: int = 200
    issued: list[str] = field(default_factory=list)
    grants: list[dict[str, str]] = field(default_factory=list)
    exchanges: list[str] = field(default_factory=list)
    fixed_token: str | None = None
    url: str = ""

    def app(self) -> web.Application:
        async def token(request: web.Request) -> web.Response:
            self.grants.append(dict(await request.post()))  # type: ignore[arg-type]
            if self.status != 200:
                return web.json_response({"error": "invalid_client"}, status=self.status)
            claims = {"preferred_username": "svc-lightspeed", "n": len(self.issued) + 1}
            issued = self.fixed_token or jwt.encode(claims, "k" * 32, algorithm="HS256")
            self.issued.append(issued)
            return web.json_response({"access_token": issued, "token_type": "Bearer", "expires_in": self.expires_in})

        async def exchange(request: web.Request) -> web.Response:
            self.exchanges.append(request.headers.get("Authorization", ""))
            return web.json_response({"auths": {"cloud.openshift.com": {"auth": f"ingress-{len(self.exchanges)}"}}})

        app = web.Application()
        app.router.add_post("/token", token)
        app.router.add_post("/access_token", exchange)
        return app


@pytest.fixture
async def sso(aiohttp_server: Any) -> TokenEndpoint:
    endpoint = TokenEndpoint()
    server = await aiohttp_server(endpoint.app(), host="127.0.0.1")
    endpoint.url = f"http://127.0.0.1:{server.port}"
    return endpoint


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "client-secret"
    path.write_text(SECRET + "\n")
    return path


def sso_identity(sso: TokenEndpoint, secret_file: Path, **extra: Any) -> dict[str, Any]:
    settings = {"mode": "sso", "token_url": f"{sso.url}/token", "client_id": "lightspeed-sa"}
    return {"identity": {**settings, "client_secret_file": str(secret_file), **extra}}


async def test_sso_grants_once_caches_and_names_the_identity(
    ingress: Ingress,
    make_config: CollectorConfig,
    sso: TokenEndpoint,
    secret_file: Path,
) -> None:
    config = make_config(collector={**sso_identity(sso, secret_file, scope="api.console"), "max_batch_files": 2})
    write_records(config)
    assert await Collector(config, once=True).async_run() is True
    assert len(ingress.accepted) > 2  # several batches, one grant
    assert sso.grants == [
        {
            "grant_type": "client_credentials",
            "client_id": "lightspeed-sa",
            "client_secret": SECRET,
            "scope": "api.console",
        }
    ]
    for received in ingress.accepted:
        assert received.headers["Authorization"] == f"Bearer {sso.issued[0]}"
        assert received.headers["User-Agent"] == "lightspeed-collector/user-data-collection cluster/svc-lightspeed"


async def test_sso_fetches_again_near_expiry_and_after_a_401(
    ingress: Ingress,
    make_config: CollectorConfig,
    sso: TokenEndpoint,
    secret_file: Path,
) -> None:
    config = make_config(collector={**sso_identity(sso, secret_file), "max_batch_files": 4})
    write_records(config, feedback=4, transcripts=4)
    sso.expires_in = 0.001  # expired as soon as it is issued: each batch gets its own
    assert await Collector(config, once=True).async_run() is True
    assert len(sso.grants) == len(ingress.accepted) == 2
    sso.expires_in = 3600
    write_records(config, feedback=1, transcripts=0)
    ingress.script = [Reply(401)]
    assert await Collector(config, once=True).async_run() is True
    assert len(sso.grants) == 4  # the refused token is replaced once
    assert ingress.accepted[-1].headers["Authorization"] == f"Bearer {sso.issued[-1]}"


async def test_sso_exchanges_its_token_for_the_ingress_token(
    ingress: Ingress,
    make_config: CollectorConfig,
    sso: TokenEndpoint,
    secret_file: Path,
) -> None:
    identity = sso_identity(sso, secret_file, exchange_url=f"{sso.url}/access_token", identity_id="cluster-7")
    config = make_config(collector=identity)
    write_records(config)
    assert await Collector(config, once=True).async_run() is True
    assert sso.exchanges == [f"Bearer {sso.issued[0]}"]
    assert ingress.accepted[0].headers["Authorization"] == "Bearer ingress-1"
    assert ingress.accepted[0].headers["User-Agent"].endswith("cluster/cluster-7")


async def test_a_refusing_token_endpoint_keeps_every_record(
    ingress: Ingress,
    make_config: CollectorConfig,
    sso: TokenEndpoint,
    secret_file: Path,
) -> None:
    sso.status = 401
    config = make_config(collector=sso_identity(sso, secret_file))
    write_records(config)
    assert await Collector(config, once=True).async_run() is False
    assert ingress.attempts == []
    assert status(config)["pending_records"] == 7  # claimed into a batch that waits
    sso.status = 200
    assert await Collector(config, once=True).async_run() is True
    assert remaining(config) == []


async def test_openshift_takes_the_pull_secret_and_the_cluster_id(
    ingress: Ingress,
    make_config: CollectorConfig,
    tmp_path: Path,
) -> None:
    pull_secret = tmp_path / "pull-secret.json"
    auths = {"cloud.openshift.com": {"auth": "cGxzOnNlY3JldA==", "email": "ops@example.com"}, "quay.io": {}}
    pull_secret.write_text(json.dumps({"auths": auths}))
    cluster_id = tmp_path / "cluster-id"
    cluster_id.write_text("0f7c8d3e-1111-4222-8333-944455556666\n")
    identity = {
        "mode": "openshift",
        "pull_secret_file": str(pull_secret),
        "cluster_id_file": str(cluster_id),
        "user_agent_product": "openshift-lightspeed-operator",
    }
    config = make_config(collector={"identity": identity})
    write_records(config)
    assert await Collector(config, once=True).async_run() is True
    headers = ingress.accepted[0].headers
    assert headers["Authorization"] == "Bearer cGxzOnNlY3JldA=="
    assert headers["User-Agent"] == EXPORTER_AGENT.format("0f7c8d3e-1111-4222-8333-944455556666")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"auths": {"quay.io": {"auth": "cXVheQ=="}}}', "not a pull secret with an auths.cloud.openshift.com.auth"),
        ("not json at all cXVheQ==", "not a pull secret"),
        (None, "openshift needs pull_secret_file"),
    ],
)
async def test_an_unusable_pull_secret_stops_the_start_naming_it(
    make_config: CollectorConfig,
    tmp_path: Path,
    content: str | None,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    identity: dict[str, Any] = {"mode": "openshift", "identity_id": "c-1"}
    if content is not None:
        (tmp_path / "pull-secret").write_text(content)
        identity["pull_secret_file"] = str(tmp_path / "pull-secret")
    config = make_config(collector={"identity": identity})
    write_records(config)
    with pytest.raises(ConfigError) as caught:
        await Collector(config, once=True).async_run()
    assert message in str(caught.value)
    assert "cXVheQ==" not in str(caught.value)
    assert status(config)["pending_records"] == 7


async def test_sso_against_the_ingest(
    make_ingest: IngestFactory,
    make_config: CollectorConfig,
    sso: TokenEndpoint,
    secret_file: Path,
) -> None:
    """The token endpoint issues a token the ingest accepts: every record lands there."""
    ingest = await make_ingest()
    sso.fixed_token = INGEST_TOKEN
    url = str(ingest.make_url("/api/ingress/v1/upload"))
    config = make_config(
        user_data_collection={"data_collector": {"ingress_server_url": url, "ingress_server_auth_token": None}},
        collector=sso_identity(sso, secret_file, identity_id="site-a"),
    )
    written = write_records(config)
    assert await Collector(config, once=True).async_run() is True
    assert remaining(config) == []
    listed = await ingest.get("/api/admin/v1/uploads", headers={"Authorization": "Bearer admin-key-for-tests"})
    uploads = (await listed.json())["uploads"]
    assert sum(upload["records"] for upload in uploads) == len(written)
