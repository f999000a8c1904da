"""What every config section is, and the settings daemons share (timeouts, allowed hosts, outbound TLS and proxies)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, PostgresDsn, field_validator, model_validator


class Section(BaseModel):
    """A config section: unknown keys are errors, nothing changes after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpTimeoutsConfig(Section):
    """How long a client may take: slow or silent clients must not hold connections (and descriptors) forever."""

    # From a connection's opening to its first complete request head (request line and headers).
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    # The longest pause while a request body is read; past it, 408 and the connection closes.
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    # And on average at least this fast once the first body timeout has passed; slower, 408 (a client
    # sending a byte every few seconds would otherwise hold its connection for hours).
    min_body_bytes_per_second: float = Field(default=1024.0, gt=0)
    # An idle kept-alive connection is closed after this long; so is one whose next request head stalls.
    keepalive_timeout_seconds: float = Field(default=15.0, gt=0)


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


def effective_allowed_hosts(host: str, allowed_hosts: tuple[str, ...] | None) -> frozenset[str]:
    """The Host names a daemon bound to `host` answers; `*` among them: any.

    Not configured: the loopback names when bound to loopback (a web page on another site
    that resolves to 127.0.0.1, DNS rebinding, must not reach a local admin API), any otherwise.
    """
    if allowed_hosts is None:
        return frozenset(LOOPBACK_NAMES if is_loopback(host) else ("*",))
    return frozenset(name.lower() for name in allowed_hosts)


class DatabaseConfig(Section):
    """A PostgreSQL database, when set; otherwise the daemon's embedded SQLite file."""

    # postgresql://user@host:5432/dbname?sslmode=verify-full (libpq's URL). The password never goes here.
    url: PostgresDsn | None = None
    # The password: a file, or a systemd credential of this name (LoadCredential=); neither for trust/peer/cert.
    password_file: Path | None = None
    password_credential: str | None = None
    # Connections at most (and threads that use them); each request holds one for a transaction's length.
    pool_size: int = Field(default=8, ge=1, le=256)
    # How long to wait for a connection (at start, and for a request) before the database counts as unreachable.
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # /readiness answers from a check run in the background this often (it never waits on the database).
    health_check_interval_seconds: float = Field(default=2.0, gt=0)

    @field_validator("url")
    @classmethod
    def _no_password_in_url(cls, url: PostgresDsn | None) -> PostgresDsn | None:
        if url is not None and any(host.get("password") for host in url.hosts()):
            raise ValueError("the URL holds a password: put it in password_file or the password credential instead")
        return url


class ClientTlsConfig(Section):
    """How a daemon checks a server it calls, and proves itself to one that asks (mTLS)."""

    # PEM CA certificates to trust instead of the system's (a private CA).
    ca_file: Path | None = None
    # A client certificate (PEM, with its chain) and its private key: from a file, or a systemd credential.
    cert_file: Path | None = None
    key_file: Path | None = None
    key_credential: str | None = None
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"

    @model_validator(mode="after")
    def _key_with_certificate(self) -> Self:
        has_key = self.key_file is not None or self.key_credential is not None
        if has_key != (self.cert_file is not None):
            raise ValueError("a client certificate needs its key (key_file or key_credential), and a key its cert_file")
        return self


class ProxyConfig(Section):
    """An HTTP proxy (CONNECT for https) between a daemon and a server it calls."""

    # http://proxy.example:3128; no user name or password here.
    url: HttpUrl | None = None
    username: str | None = None
    password_file: Path | None = None
    password_credential: str | None = None
    # Hosts reached directly, as NO_PROXY lists them (`.example.com`, `10.0.0.1`); the NO_PROXY
    # (or no_proxy) environment variable adds its own.
    no_proxy: tuple[str, ...] = ()

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, url: HttpUrl | None) -> HttpUrl | None:
        if url is not None and (url.username or url.password):
            raise ValueError("the URL holds credentials: use username and password_file or password_credential")
        return url
