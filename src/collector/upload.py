"""Uploading one archive to an insights-style ingress, with bounded backoff.

The contract: POST multipart/form-data, part `file` named `<batch_id>.tar.gz`
with content type `application/vnd.redhat.<service>.periodic+tar`, headers
`Authorization: Bearer <token>`, `x-rh-insights-request-id: <batch_id>` and a
User-Agent naming product, version and installation. Any 2xx is acceptance,
whatever the body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_after_delay

from collector.errors import BatchTooLarge, IngressRejected, IngressUnavailable, TokenRejected
from lightspeed_common.backoff import RetryAfterOrBackoff, parse_retry_after
from lightspeed_common.config import AppConfig, RetryConfig
from lightspeed_common.credentials import read_secret
from lightspeed_common.identity import installation_id
from lightspeed_common.json_text import parse_json
from lightspeed_common.version import VERSION

log = structlog.get_logger(__name__)

TokenSource = Callable[[], str | None]


@dataclass(frozen=True)
class Accepted:
    status: int
    request_id: str | None
    seconds: float
    attempts: int


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, IngressUnavailable)


def classify(status: int, body: str, retry_after: float | None) -> Exception | None:
    """None for acceptance; otherwise the error this answer means."""
    if 200 <= status < 300:
        return None
    if status == 401:
        return TokenRejected(status, body)
    if status == 413:
        return BatchTooLarge(status, body)
    if status in (408, 429) or status >= 500:
        return IngressUnavailable(status, body, retry_after)
    return IngressRejected(status, body)


class Uploader:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        url: str,
        service: str,
        token: TokenSource,
        user_agent: str,
        retry: RetryConfig,
        timeout_seconds: float,
    ) -> None:
        self._session = session
        self._url = url
        self._content_type = f"application/vnd.redhat.{service}.periodic+tar"
        self._token = token
        self._user_agent = user_agent
        self._retry = retry
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=timeout_seconds)

    async def upload(self, batch_id: str, archive: Path) -> Accepted:
        """Deliver `archive`, retrying what is worth retrying.

        Raises TokenRejected (after one re-read of the token), BatchTooLarge,
        IngressRejected, or IngressUnavailable once the retries are spent.
        """
        started = time.monotonic()
        token = await asyncio.to_thread(self._token)
        retried_token = False
        attempts = 0
        while True:
            try:
                async for attempt in self._retrying():
                    with attempt:
                        attempts += 1
                        status, request_id = await self._post_once(batch_id, archive, token)
                return Accepted(status, request_id, time.monotonic() - started, attempts)
            except TokenRejected:
                if retried_token:
                    raise
                retried_token = True
                token = await asyncio.to_thread(self._token)
                log.warning("ingress_token_rejected", batch_id=batch_id, action="re-reading the token once")

    def _retrying(self) -> AsyncRetrying:
        config = self._retry
        return AsyncRetrying(
            stop=stop_after_attempt(config.max_attempts) | stop_after_delay(config.max_elapsed_seconds),
            wait=RetryAfterOrBackoff(config),
            retry=retry_if_exception(is_retryable),
            before_sleep=_log_retry,
            reraise=True,
        )

    async def _post_once(self, batch_id: str, archive: Path, token: str | None) -> tuple[int, str | None]:
        headers = {"x-rh-insights-request-id": batch_id, "User-Agent": self._user_agent}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        form = aiohttp.FormData()
        try:
            with archive.open("rb") as handle:
                form.add_field("file", handle, filename=f"{batch_id}.tar.gz", content_type=self._content_type)
                async with self._session.post(self._url, data=form, headers=headers, timeout=self._timeout) as resp:
                    body = await resp.text(errors="replace")
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    error = classify(resp.status, body, retry_after)
                    if error is not None:
                        raise error
                    return resp.status, _request_id(body, resp.headers.get("x-rh-insights-request-id"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise IngressUnavailable(None, str(exc) or type(exc).__name__) from exc


def _request_id(body: str, header: str | None) -> str | None:
    """The ingress's request id if it gave one: a 202 body may be empty or not JSON at all."""
    try:
        parsed = parse_json(body)
    except ValueError:
        return header
    value = parsed.get("request_id") if isinstance(parsed, dict) else None
    return str(value) if value else header


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "upload_retry",
        attempt=state.attempt_number,
        wait_seconds=round(state.next_action.sleep, 2) if state.next_action else None,
        error=str(exc),
    )


async def build_uploader(config: AppConfig, session: aiohttp.ClientSession) -> Uploader:
    """The uploader the config describes; the token is read at each upload (it may rotate)."""
    dc = config.user_data_collection.data_collector
    try:
        identity = await asyncio.to_thread(installation_id, config.service.state_dir)
    except OSError as exc:
        # The server creates it; a collector that may not write the server's state says so.
        log.warning("installation_id_unavailable", state_dir=str(config.service.state_dir), error=exc.strerror)
        identity = "unknown"
    cfg = config.collector

    def token() -> str | None:
        return read_secret(dc.ingress_server_auth_token, cfg.ingress_token_file, cfg.ingress_token_credential)

    return Uploader(
        session,
        url=str(dc.ingress_server_url),
        service=dc.ingress_content_service_name or "lightspeed",
        token=token,
        user_agent=f"lightspeed-collector/{VERSION} (installation {identity})",
        retry=cfg.retry,
        timeout_seconds=float(dc.connection_timeout_seconds),
    )
