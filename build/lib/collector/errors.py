"""The collector's errors: what the ingress said, as data."""

from __future__ import annotations


class CollectorError(Exception):
    """Base of the collector's own errors."""


class IngressError(CollectorError):
    """The ingress did not accept a batch."""

    def __init__(self, status: int | None, detail: str, retry_after: float | None = None) -> None:
        self.status = status
        self.detail = detail[:500]
        self.retry_after = retry_after
        where = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{where}: {self.detail}")


class IngressUnavailable(IngressError):
    """Worth retrying: connection errors, timeouts, 408, 429, 5xx."""


class TokenRejected(IngressError):
    """401: the token may have rotated; re-read it once."""


class BatchTooLarge(IngressError):
    """413: split the batch."""


class IngressRejected(IngressError):
    """Permanent (400, 403, 415, other 4xx): quarantine the batch with the response."""


class SpoolTrouble(CollectorError):
    """The spool's disk said no (full, read-only, I/O error): the flush stops, nothing claimed is lost."""

    def __init__(self, step: str, batch_id: str, error: OSError) -> None:
        self.step = step
        self.batch_id = batch_id
        self.error = error
        super().__init__(f"{step}: {error.strerror}")
