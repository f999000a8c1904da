"""What the handlers share: the config, the database, the keys, the rate limits and the metrics."""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from ingest.archive_store import ArchiveStore
from ingest.ratelimit import TokenBuckets
from ingest.storage import Database
from lightspeed_common.config_ingest import IngestConfig
from lightspeed_common.errors import Forbidden
from lightspeed_common.health import HealthProbe
from lightspeed_common.http.bearer import NO_CREDENTIALS, bearer_token
from lightspeed_common.http.metrics import HttpMetrics


class IngestMetrics(HttpMetrics):
    def __init__(self) -> None:
        super().__init__("lightspeed_ingest")
        self.uploads = Counter(
            "lightspeed_ingest_uploads",
            "Uploads by result (stored, duplicate_request, rejected, too_large, unsupported, unauthorized, busy)",
            ["result"],
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "lightspeed_ingest_upload_bytes", "Bytes of archives stored", registry=self.registry
        )
        self.records = Counter(
            "lightspeed_ingest_records",
            "Records in stored uploads: new, or duplicate (already received)",
            ["result"],
            registry=self.registry,
        )
        self.telemetry_events = Counter(
            "lightspeed_ingest_telemetry_events",
            "Telemetry events by result (accepted, duplicate, rejected)",
            ["result"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "lightspeed_ingest_rate_limited",
            "Requests answered 429, by the limit hit (address, client)",
            ["scope"],
            registry=self.registry,
        )
        self.deletions = Counter(
            "lightspeed_ingest_deletion_requests", "Client deletion requests handled", registry=self.registry
        )
        self.erasure_removed = Counter(
            "lightspeed_ingest_erasure_removed",
            "What user erasures removed (records, archives_rewritten, archives_removed)",
            ["what"],
            registry=self.registry,
        )
        self.retention_removed = Counter(
            "lightspeed_ingest_retention_removed",
            "Entries removed by retention (uploads, contributions, seen_events)",
            ["what"],
            registry=self.registry,
        )
        for result in ("stored", "duplicate_request", "rejected", "too_large", "unsupported", "unauthorized", "busy"):
            self.uploads.labels(result)
        for result in ("accepted", "duplicate", "rejected"):
            self.telemetry_events.labels(result)


@dataclass(frozen=True)
class KeyRing:
    """Accepted secrets for one purpose; compared in constant time, never logged."""

    purpose: str
    keys: tuple[str, ...]

    def check(self, request: web.Request) -> None:
        """401 without credentials, 403 with wrong ones (Bearer, or Basic's password for browsers)."""
        if not self.keys:
            raise Forbidden(
                f"No {self.purpose} key is configured", f"Configure one to use this endpoint ({self.purpose})"
            )
        token = bearer_token(request)
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(token.encode(), key.encode())
        if not matched:
            raise Forbidden(NO_CREDENTIALS, f"The {self.purpose} key is not valid")

    def check_if_configured(self, request: web.Request) -> None:
        if self.keys:
            self.check(request)


def parse_keys(text: str | None) -> list[str]:
    """One key a line; blank lines and `#` comments ignored."""
    if not text:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@dataclass
class Ingest:
    config: IngestConfig
    db: Database
    archives: ArchiveStore
    upload_keys: KeyRing
    telemetry_keys: KeyRing
    admin_keys: KeyRing
    metrics: IngestMetrics
    health: HealthProbe  # the database's, probed in the background for /readiness
    by_address: TokenBuckets = field(init=False)
    by_client: TokenBuckets = field(init=False)
    new_clients_by_address: TokenBuckets = field(init=False)
    # Wrong admin keys per source address: a few tries, then one a minute.
    admin_failures: TokenBuckets = field(init=False)
    # Events per source address and model: a share of the model's day that refills over the day.
    events_by_address_model: TokenBuckets = field(init=False)
    # Uploads received at once (uploads.max_concurrent); past it, 503 with Retry-After.
    upload_slots: asyncio.Semaphore = field(init=False)
    # Set when an erasure may be pending (received, asked for, or at start-up): the erasure task applies it.
    erasures_waiting: asyncio.Event = field(default_factory=asyncio.Event)
    # One pass over the pending erasures at a time on this node (the task's, or the admin route's).
    erasure_pass: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.upload_slots = asyncio.Semaphore(self.config.uploads.max_concurrent)
        limits = self.config.telemetry.rate_limit
        self.by_address = TokenBuckets(limits.per_address_burst_requests, limits.per_address_requests_per_minute / 60)
        self.by_client = TokenBuckets(limits.per_client_burst_events, limits.per_client_events_per_hour / 3600)
        self.admin_failures = TokenBuckets(self.config.admin_wrong_keys_burst, 1 / 60)
        share = self.config.telemetry.max_events_per_address_per_model_per_day
        self.events_by_address_model = TokenBuckets(share, share / 86400)
        self.new_clients_by_address = TokenBuckets(
            limits.per_address_new_clients_burst, limits.per_address_new_clients_per_day / 86400
        )


# What start-up opened: one typed object, built once every part of it is open.
INGEST = web.AppKey("ingest", Ingest)
# /openapi.json, built by create_app.
OPENAPI = web.AppKey("openapi", dict[str, Any])
