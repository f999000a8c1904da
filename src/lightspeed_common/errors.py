"""The daemons' errors. Only handlers and the shared middleware turn them into HTTP responses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Exit codes (sysexits.h), so systemd can refuse to restart-loop on a bad config.
EXIT_CONFIG = 78
EXIT_CANTCREAT = 73
EXIT_UNAVAILABLE = 69  # a part of the install is missing (the server extra): starting again cannot help
EXIT_TEMPFAIL = 75  # a database that cannot be reached at start: systemd starts the daemon again


class LightspeedError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(LightspeedError):
    """The configuration file is unreadable or invalid."""

    def __init__(self, source: Path | str, problems: Sequence[str]) -> None:
        self.source = str(source)
        self.problems = list(problems)
        super().__init__(f"{self.source}: " + "; ".join(self.problems))


class StorageError(LightspeedError):
    """A storage directory cannot be created or written, or a database (named by its URL) cannot be used."""

    def __init__(self, what: str, path: Path | str, reason: str, *, temporary: bool = False) -> None:
        self.what = what
        self.path = path
        self.reason = reason
        self.temporary = temporary  # it may work later (a database not reachable yet): exit 75, not 73
        super().__init__(f"{what}{' directory' if isinstance(path, Path) else ''} {path} is not usable: {reason}")


class RecordWriteError(LightspeedError):
    """A record could not be written; nothing partial is left behind."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"could not write the {kind} record: {reason}")


class ApiError(LightspeedError):
    """An error with an HTTP meaning: `{"detail": {"response", "cause"}}`."""

    status = 500

    def __init__(self, response: str, cause: str, headers: dict[str, str] | None = None) -> None:
        self.response = response
        self.cause = cause
        self.headers = headers or {}
        super().__init__(f"{response}: {cause}")


class RequestInvalid(LightspeedError):
    """A body failed validation; `errors` is the 422 detail list."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} validation error(s)")


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class RequestTimeout(ApiError):
    """The client stopped sending its body, or sends it too slowly (408); the connection is closed."""

    status = 408


class Unprocessable(ApiError):
    """A body that parses but holds a value the server refuses (lightspeed-stack's own 422 checks)."""

    status = 422


# lightspeed-stack's `response` for a request value it refuses (its 422s).
INVALID_ATTRIBUTE = "Invalid attribute value"


class Conflict(ApiError):
    status = 409


class MisdirectedRequest(ApiError):
    """The Host header names a site this daemon does not serve (DNS rebinding) (421)."""

    status = 421


class PayloadTooLarge(ApiError):
    status = 413


class TooManyRequests(ApiError):
    """Slow down: the Retry-After header says for how long (429)."""

    status = 429


class UnsupportedMediaType(ApiError):
    status = 415


class InsufficientStorage(ApiError):
    """The disk is full: retry later (507)."""

    status = 507


class ServiceUnavailable(ApiError):
    """A service this one depends on (the answer provider, the model registry) cannot be reached (503)."""

    status = 503


class BadGateway(ApiError):
    """A service this one depends on answered with something unusable, or refused (502)."""

    status = 502
