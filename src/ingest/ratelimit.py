"""Token buckets in memory: a source address or a client may burst, then is held to a steady rate.

Nothing here is persisted or logged; keys are dropped once their bucket has
refilled, and the table never holds more than `max_keys` of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(
        self,
        capacity: float,
        per_second: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.per_second = per_second
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _refilled(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            return _Bucket(self.capacity, now)
        tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.per_second)
        return _Bucket(tokens, now)

    def wait_seconds(self, wanted: Mapping[str, float]) -> float:
        """How long until every key has its amount; 0 when they all have it now. Takes nothing."""
        now = self._clock()
        longest = 0.0
        for key, amount in wanted.items():
            missing = amount - self._refilled(key, now).tokens
            if missing > 0:
                longest = max(longest, missing / self.per_second)
        return longest

    def take(self, wanted: Mapping[str, float]) -> float:
        """Take every amount if all are available (returns 0); otherwise take nothing and return the wait."""
        wait = self.wait_seconds(wanted)
        if wait > 0:
            return wait
        now = self._clock()
        for key, amount in wanted.items():
            bucket = self._refilled(key, now)
            bucket.tokens -= amount
            self._buckets[key] = bucket
        if len(self._buckets) > self.max_keys:
            self._prune(now)
        return 0.0

    def available(self, key: str) -> int:
        """Whole tokens `key` has now. Takes nothing."""
        return math.floor(self._refilled(key, self._clock()).tokens)

    def take_up_to(self, key: str, amount: int) -> None:
        """Take `amount` tokens, or as many whole ones as are there (a concurrent request took the rest)."""
        now = self._clock()
        bucket = self._refilled(key, now)
        bucket.tokens -= max(0, min(amount, math.floor(bucket.tokens)))
        self._buckets[key] = bucket
        if len(self._buckets) > self.max_keys:
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget full buckets; if that is not enough, the least recently used half."""
        full_after = self.capacity / self.per_second
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.updated < full_after}
        if len(self._buckets) > self.max_keys:
            by_age = sorted(self._buckets.items(), key=lambda item: item[1].updated)
            self._buckets = dict(by_age[len(by_age) // 2 :])


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
