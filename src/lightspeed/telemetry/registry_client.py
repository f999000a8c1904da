"""The model registry's HTTP client: one POST of a batch, one DELETE of a client's contributions.

408, 429, 5xx and network errors are `RegistryUnavailable` (keep the batch, try again later, honouring
Retry-After); any other 4xx is `RegistryRejected` (the batch is dropped). Certificates are always
checked; redirects are never followed.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Sequence
from typing import Any

import aiohttp

from lightspeed_common.backoff import parse_retry_after
from lightspeed_common.config import TelemetryConfig
from lightspeed_common.version import VERSION


class RegistryUnavailable(Exception):
    """408, 429, 5xx or a network error: keep the batch, try again later."""

    def __init__(self, status: int | None, detail: str, retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"registry unavailable ({status or 'no answer'}): {detail}")


class RegistryRejected(Exception):
    """Any other 4xx: the batch is dropped."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        super().__init__(f"registry refused the request ({status}): {detail}")


def ssl_context(config: TelemetryConfig) -> ssl.SSLContext:
    """Certificates are always checked; `ca_file` adds a private CA."""
    return ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)


class RegistryClient:
    def __init__(self, session: aiohttp.ClientSession, config: TelemetryConfig, token: str | None) -> None:
        self._session = session
        self._url = str(config.registry_url)
        self._timeout = aiohttp.ClientTimeout(total=config.request_timeout_seconds)
        # No installation id or host name here: the User-Agent must not identify the machine.
        self._headers = {"Content-Type": "application/json", "User-Agent": f"lightspeed/{VERSION}"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    async def post(self, lines: Sequence[str]) -> dict[str, Any]:
        body = ("[" + ",".join(lines) + "]").encode("ascii")
        return await self._request("POST", self._url, body)

    async def request_deletion(self, client_id: str) -> dict[str, Any]:
        """Ask the registry to remove this client's contributions: `DELETE <registry_url>/clients/<id>`."""
        return await self._request("DELETE", f"{self._url.rstrip('/')}/clients/{client_id}", None)

    async def _request(self, method: str, url: str, body: bytes | None) -> dict[str, Any]:
        try:
            # No redirects: one could lead from https to plain http, or to another host.
            async with self._session.request(
                method, url, data=body, headers=self._headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                text = await resp.text(errors="replace")
                if 200 <= resp.status < 300:
                    return _reply(text)
                detail = text[:200]
                if resp.status in (408, 429) or resp.status >= 500:
                    raise RegistryUnavailable(resp.status, detail, parse_retry_after(resp.headers.get("Retry-After")))
                raise RegistryRejected(resp.status, detail)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RegistryUnavailable(None, str(exc) or type(exc).__name__) from exc


def _reply(text: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
