"""The OpenAI-compatible provider over TLS as configured: a private CA, mTLS, a minimum version, and
a real CONNECT proxy (proxy.py) that NO_PROXY bypasses. Every server here is started by the test."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import ClientFactory, ConfigFactory, StartupFailure
from tests.fake_llm import ANSWER_PIECES, FakeLLM
from tests.tls_support import PrivateCA, Proxy

QUESTION = {"query": "How do I start the server?"}


async def https_llm(aiohttp_server: Any, context: ssl.SSLContext, host: str = "127.0.0.1") -> tuple[FakeLLM, str]:
    fake = FakeLLM()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.completions)
    app.router.add_get("/v1/models", fake.models)
    server = await aiohttp_server(app, host="127.0.0.1", ssl=context)
    return fake, f"https://{host}:{server.port}/v1"


def provider(make_config: ConfigFactory, base_url: str, **openai: Any) -> Any:
    return make_config(answers={"provider": "openai", "openai": {"base_url": base_url, "model": "tiny", **openai}})


async def ask(client: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/v1/query", json=QUESTION)
    return resp.status, await resp.json()


async def test_a_private_ca_is_trusted_only_when_configured(
    make_client: ClientFactory, make_config: ConfigFactory, aiohttp_server: Any, private_ca: PrivateCA
) -> None:
    fake, url = await https_llm(aiohttp_server, private_ca.server_context())
    status, body = await ask(await make_client(provider(make_config, url, tls={"ca_file": str(private_ca.ca_file)})))
    assert (status, body["response"]) == (200, "".join(ANSWER_PIECES))
    status, body = await ask(await make_client(provider(make_config, url)))
    assert status == 503
    assert "certificate verify failed" in body["detail"]["cause"]
    assert len(fake.requests) == 1


async def test_mtls_presents_the_client_certificate_from_a_file_or_a_credential(
    make_client: ClientFactory,
    make_config: ConfigFactory,
    aiohttp_server: Any,
    private_ca: PrivateCA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, url = await https_llm(aiohttp_server, private_ca.server_context(client_certificates=True))
    ca = str(private_ca.ca_file)
    with_file = {"ca_file": ca, "cert_file": str(private_ca.client_cert), "key_file": str(private_ca.client_key)}
    assert (await ask(await make_client(provider(make_config, url, tls=with_file))))[0] == 200
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "llm-client-key").write_bytes(private_ca.client_key.read_bytes())
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    with_credential = {"ca_file": ca, "cert_file": str(private_ca.client_cert), "key_credential": "llm-client-key"}
    assert (await ask(await make_client(provider(make_config, url, tls=with_credential))))[0] == 200
    status, _ = await ask(await make_client(provider(make_config, url, tls={"ca_file": ca})))
    assert status == 503  # the server wants a certificate this client has none of
    assert len(fake.requests) == 2


async def test_the_minimum_tls_version_is_kept(
    make_client: ClientFactory, make_config: ConfigFactory, aiohttp_server: Any, private_ca: PrivateCA
) -> None:
    fake, url = await https_llm(aiohttp_server, private_ca.server_context(max_version=ssl.TLSVersion.TLSv1_2))
    ca = str(private_ca.ca_file)
    assert (await ask(await make_client(provider(make_config, url, tls={"ca_file": ca}))))[0] == 200
    tls13 = {"ca_file": ca, "min_version": "TLSv1.3"}
    status, body = await ask(await make_client(provider(make_config, url, tls=tls13)))
    assert status == 503  # the server, at most TLS 1.2, drops the handshake
    assert "ConnectionResetError" in body["detail"]["cause"]
    assert len(fake.requests) == 1


async def test_the_proxy_carries_the_calls_unless_no_proxy_names_the_host(
    make_client: ClientFactory,
    make_config: ConfigFactory,
    aiohttp_server: Any,
    private_ca: PrivateCA,
    connect_proxy: Proxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, url = await https_llm(aiohttp_server, private_ca.server_context(), host="localhost")
    target = url.removeprefix("https://").removesuffix("/v1")
    password = tmp_path / "proxy-password"
    password.write_text("proxy-secret\n")
    tls = {"ca_file": str(private_ca.ca_file)}
    proxy = {"url": connect_proxy.url, "username": "lightspeed", "password_file": str(password)}
    client = await make_client(provider(make_config, url, tls=tls, proxy=proxy))
    assert (await ask(client))[0] == 200
    await client.close()  # the tunnel closes, and the proxy logs it
    connect_proxy.wait_for_connect(target)
    tunnels = len(connect_proxy.connects())
    # NO_PROXY, from the config or the environment: straight to the server.
    for no_proxy, env in ((["localhost"], ""), ([], "example.com, .localhost")):
        monkeypatch.setenv("NO_PROXY", env)
        client = await make_client(provider(make_config, url, tls=tls, proxy={**proxy, "no_proxy": no_proxy}))
        assert (await ask(client))[0] == 200
        await client.close()
    # A wrong password: the proxy refuses the tunnel (407), the question is 503.
    password.write_text("wrong")
    monkeypatch.delenv("NO_PROXY")
    client = await make_client(provider(make_config, url, tls=tls, proxy=proxy))
    status, body = await ask(client)
    assert status == 503
    assert "407" in body["detail"]["cause"]
    assert len(fake.requests) == 3
    assert len([line for line in connect_proxy.connects() if target in line]) == tunnels


@pytest.mark.parametrize(
    ("openai", "message"),
    [
        ({"tls": {"ca_file": "/nonexistent/ca.pem"}}, "answers.openai.tls.ca_file: cannot load CA certificates"),
        (
            {"tls": {"cert_file": "/nonexistent/c.pem", "key_file": "/nonexistent/k.pem"}},
            "answers.openai.tls.cert_file",
        ),
        ({"tls": {"cert_file": "/c.pem", "key_credential": "absent"}}, "answers.openai.tls.key_credential"),
        ({"tls": {"cert_file": "/c.pem"}}, "a client certificate needs its key"),
        ({"proxy": {"url": "http://u:p@proxy:3128"}}, "the URL holds credentials"),
        (
            {"proxy": {"url": "http://proxy:3128", "password_file": "/nonexistent"}},
            "answers.openai.proxy.password_file",
        ),
    ],
)
async def test_unusable_tls_or_proxy_settings_stop_start_up_naming_the_key(
    startup_failure: StartupFailure, make_config: ConfigFactory, openai: dict[str, Any], message: str
) -> None:
    try:
        config = provider(make_config, "https://llm.example/v1", **openai)
    except Exception as exc:  # the config itself refuses it
        error: BaseException = exc
    else:
        error = await startup_failure(config)
    assert message in str(error)
    assert "p@proxy" not in str(error)
