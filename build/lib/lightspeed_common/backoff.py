"""Backoff shared by the collector's uploads and the telemetry sender.

Retry-After is honoured (seconds or an HTTP date), capped so a server cannot
park a client for days; otherwise exponential backoff with jitter.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

from tenacity import RetryCallState, wait_exponential, wait_random

from lightspeed_common.config import RetryConfig


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_after_of(exc: BaseException | None) -> float | None:
    """The Retry-After an error carries (an attribute `retry_after`), if any."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) else None


class RetryAfterOrBackoff:
    """tenacity wait: the server's Retry-After when it gave one (capped), else exponential jitter."""

    def __init__(self, config: RetryConfig) -> None:
        # Jitter on top of the capped delay: wait_exponential_jitter caps the sum, so at max_seconds
        # every client would retry in lockstep, exactly when a recovering server needs them spread.
        self._backoff = wait_exponential(multiplier=config.initial_seconds, max=config.max_seconds) + wait_random(
            0, config.jitter_seconds
        )
        self._cap = config.max_retry_after_seconds

    def __call__(self, state: RetryCallState) -> float:
        retry_after = retry_after_of(state.outcome.exception() if state.outcome else None)
        if retry_after is not None:
            return min(retry_after, self._cap)
        return float(self._backoff(state))
