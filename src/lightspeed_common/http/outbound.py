"""How a daemon reaches a server it calls: TLS as configured (a private CA, a client certificate
for mTLS, a minimum version) and, unless NO_PROXY names the host, through an HTTP proxy.

`Outbound.build` reads the files (blocking) once at start-up and names the config key of
whatever cannot be used; `session()` is an aiohttp session that checks servers that way, and
`via(url)` the options of a request to `url` (the proxy, unless NO_PROXY names the host).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from lightspeed_common.config_base import ClientTlsConfig, ProxyConfig
from lightspeed_common.credentials import read_secret
from lightspeed_common.errors import ConfigError

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


@dataclass(frozen=True)
class Outbound:
    ssl: ssl.SSLContext
    proxy: ProxyConfig
    proxy_password: str | None

    @classmethod
    def build(cls, tls: ClientTlsConfig, proxy: ProxyConfig, key: str) -> Outbound:
        """The way out configured under `key` (e.g. `answers.openai`), which its error messages name."""
        context = client_ssl_context(tls, f"{key}.tls")
        try:
            password = read_secret(None, proxy.password_file, proxy.password_credential)
        except OSError as exc:
            raise ConfigError(f"{key}.proxy.password_file", [f"cannot read it: {exc.strerror}"]) from None
        return cls(context, proxy, password)

    def session(self, **options: Any) -> aiohttp.ClientSession:
        """A session that verifies servers with this context; pass `via(url)` to each request."""
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl), **options)

    def via(self, target: str) -> dict[str, Any]:
        """The request options that reach `target` through the proxy with its credentials; none when
        there is no proxy or NO_PROXY (the config's or the environment's) names the host."""
        proxy = self.proxy
        if proxy.url is None:
            return {}
        environment = [*os.environ.get("NO_PROXY", "").split(","), *os.environ.get("no_proxy", "").split(",")]
        if bypassed(urlsplit(target).hostname or "", [*proxy.no_proxy, *environment]):
            return {}
        if proxy.username is None:
            return {"proxy": str(proxy.url)}
        credentials = aiohttp.encode_basic_auth(proxy.username, self.proxy_password or "")
        return {"proxy": str(proxy.url), "proxy_headers": {"Proxy-Authorization": credentials}}


def client_ssl_context(tls: ClientTlsConfig, key: str) -> ssl.SSLContext:
    """The system's trust (or `ca_file`'s), hostname checks, the minimum version, the client certificate."""
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{key}.ca_file", [f"cannot load CA certificates from {tls.ca_file}: {_reason(exc)}"]
        ) from None
    context.minimum_version = _VERSIONS[tls.min_version]
    if tls.cert_file is not None:
        key_path = _key_path(tls, key)
        try:
            context.load_cert_chain(tls.cert_file, key_path)
        except (OSError, ssl.SSLError) as exc:
            # The file names only: a key's content never reaches a message.
            problem = f"cannot load the client certificate {tls.cert_file} with its key: {_reason(exc)}"
            raise ConfigError(f"{key}.cert_file", [problem]) from None
    return context


def _key_path(tls: ClientTlsConfig, key: str) -> Path:
    if tls.key_file is not None:
        return tls.key_file
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    path = Path(directory) / str(tls.key_credential) if directory else None
    if path is None or not path.is_file():
        raise ConfigError(f"{key}.key_credential", [f"no systemd credential named {tls.key_credential}"])
    return path


def bypassed(host: str, no_proxy: list[str]) -> bool:
    """Whether NO_PROXY's entries name `host`, as curl reads them: `*` is every host, `example.com`
    and `.example.com` that domain and every host under it; ports are ignored."""
    host = host.lower().rstrip(".")
    for entry in no_proxy:
        name = entry.strip().lower()
        if name.startswith("[") and "]" in name:
            name = name[1 : name.index("]")]  # [::1]:8080
        elif name.count(":") == 1:
            name = name.partition(":")[0]  # host:port
        name = name.lstrip(".").rstrip(".")
        if name == "*" or (name and (host == name or host.endswith("." + name))):
            return True
    return False


def _reason(exc: OSError | ssl.SSLError) -> str:
    return exc.strerror or getattr(exc, "reason", None) or str(exc)
