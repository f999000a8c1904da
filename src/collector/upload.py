"""Uploading one archive to an insights-style ingress, with bounded backoff.

The contract: POST multipart/form-data, part `file` named `<batch_id>.tar.gz`
with content type `application/vnd.redhat.<service>.periodic+tar`, headers
`Authorization: Bearer <token>`, `x-rh-insights-request-id: <batch_id>` and a
User-Agent carrying the identity (collector.identity). Any 2xx is acceptance,
whatever the body.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_after_delay

from collector.errors import BatchTooLarge, IngressRejected, IngressUnavailable, TokenRejected
from collector.identity import Credentials, build_credentials
from collector.identity import user_agent as user_agent_of
from lightspeed_common import tracing
from lightspeed_common.backoff import RetryAfterOrBackoff, parse_retry_after
from lightspeed_common.config import AppConfig, RetryConfig
from lightspeed_common.http.outbound import Outbound
from lightspeed_common.json_text import parse_json

log = structlog.get_logger(__name__)


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
        session: tuple[aiohttp.ClientSession, Outbound],
        *,
        url: str,
        service: str,
        credentials: Credentials,
        user_agent_product: str,
        retry: RetryConfig,
        timeout_seconds: float,
    ) -> None:
        self._session, outbound = session
        self._url = url
        self._via = outbound.via(url)
        self._content_type = f"application/vnd.redhat.{service}.periodic+tar"
        self._credentials = credentials
        self._product = user_agent_product
        self._retry = retry
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=timeout_seconds)

    async def upload(self, batch_id: str, archive: Path) -> Accepted:
        """Deliver `archive`, retrying what is worth retrying.

        Raises TokenRejected (after one fresh token), BatchTooLarge, IngressRejected, or
        IngressUnavailable once the retries are spent (or no token can be had now).
        """
        started = time.monotonic()
        token = await self._credentials.token()
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
                self._credentials.refused()
                token = await self._credentials.token()
                log.warning("ingress_token_rejected", batch_id=batch_id, action="trying a fresh token once")

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
        user_agent = user_agent_of(self._product, self._credentials.identity)
        headers = {"x-rh-insights-request-id": batch_id, "User-Agent": user_agent}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        tracing.inject(headers)  # the ingest's receive continues this upload's trace
        form = aiohttp.FormData()
        try:
            with archive.open("rb") as handle:
                form.add_field("file", handle, filename=f"{batch_id}.tar.gz", content_type=self._content_type)
                post = self._session.post(self._url, data=form, headers=headers, timeout=self._timeout, **self._via)
                async with post as resp:
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


async def build_uploader(config: AppConfig, http: tuple[aiohttp.ClientSession, Outbound]) -> Uploader:
    """The uploader the config describes, with the configured mode's credentials."""
    dc = config.user_data_collection.data_collector
    cfg = config.collector
    return Uploader(
        http,
        url=str(dc.ingress_server_url),
        service=dc.ingress_content_service_name or "lightspeed",
        credentials=await build_credentials(config, http),
        user_agent_product=cfg.identity.user_agent_product,
        retry=cfg.retry,
        timeout_seconds=float(dc.connection_timeout_seconds),
    )
