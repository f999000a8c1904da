"""The `ingest` section: lightspeed-ingest's uploads, model registry, archive and /admin."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, IPvAnyNetwork, PositiveInt, SecretStr, model_validator

from lightspeed_common.config_base import DatabaseConfig, HttpTimeoutsConfig, Section


class IngestUploadsConfig(Section):
    """`POST /api/ingress/v1/upload`: who may upload what, and how big it may be."""

    # The <service> of `application/vnd.redhat.<service>.<category>+tgz`; others get 415.
    allowed_services: tuple[str, ...] = ("lightspeed",)
    # Bearer tokens the collectors send (ingress_server_auth_token); one per line in the file or credential.
    tokens: tuple[SecretStr, ...] = ()
    tokens_file: Path | None = None
    tokens_credential: str | None = "lightspeed-ingest-upload-tokens"
    max_upload_bytes: PositiveInt = 100 * 1024 * 1024  # compressed, as console.redhat.com's ingress
    # An upload slower than this on average (after timeouts.body_timeout_seconds) gets 408 and frees its slot.
    min_bytes_per_second: PositiveInt = 16 * 1024
    # Uploads received at once; more get 503 with Retry-After (the collector retries them).
    max_concurrent: PositiveInt = 8
    # Tar-bomb limits, checked while the archive is read, before anything is indexed.
    max_uncompressed_bytes: PositiveInt = 1024 * 1024 * 1024
    max_records: PositiveInt = 100_000
    max_record_bytes: PositiveInt = 16 * 1024 * 1024
    retention_days: PositiveInt = 90


class IngestRateLimitConfig(Section):
    """Token buckets kept in memory: addresses and client ids are never stored."""

    per_address_burst_requests: PositiveInt = 200
    per_address_requests_per_minute: PositiveInt = 120
    # A client's whole queue (10,000 events) fits in one burst; then about one event a minute.
    per_client_burst_events: PositiveInt = 10_000
    per_client_events_per_hour: PositiveInt = 60
    # New installations (client ids this registry has not counted before) per source address; without
    # it, anyone could fill the registry with fake installations. Senders with a telemetry key are exempt.
    per_address_new_clients_burst: PositiveInt = 20
    per_address_new_clients_per_day: PositiveInt = 20
    # Behind a reverse proxy every request comes from the proxy: list its addresses (or
    # networks) and the client's address is taken from X-Forwarded-For instead.
    trusted_proxies: tuple[IPvAnyNetwork, ...] = ()


class IngestTelemetryConfig(Section):
    """`POST /api/v1/telemetry`: the model registry."""

    # Optional: with keys (one per line), only their holders may send; without, anyone, rate-limited.
    api_keys: tuple[SecretStr, ...] = ()
    api_keys_file: Path | None = None
    api_keys_credential: str | None = "lightspeed-ingest-telemetry-keys"
    max_body_bytes: PositiveInt = 1024 * 1024
    max_events_per_request: PositiveInt = 1000
    max_event_age_days: PositiveInt = 30
    # Stored events per model and day, all installations together; past it events are answered `capped`.
    max_events_per_model_per_day: PositiveInt = 10_000
    # One installation's share of a model's day, and one source address's (its installations together):
    # without them one anonymous sender could use up the model's day and leave everyone else `capped`.
    max_events_per_client_per_model_per_day: PositiveInt = 100
    max_events_per_address_per_model_per_day: PositiveInt = 1_000
    # Refuse to start without telemetry keys (the production default): the registry is never open to anyone.
    require_api_key: bool = False
    retention_days: PositiveInt = 395
    rate_limit: IngestRateLimitConfig = IngestRateLimitConfig()


class IngestArchiveConfig(Section):
    """Where accepted upload archives are kept (`ingest.archive_store.ArchiveStore`)."""

    # filesystem: under `<directory>/archives/`, received into `<directory>/incoming/` (one file system).
    store: Literal["filesystem"] = "filesystem"
    # Default: state_dir. Nodes sharing one database share this directory too (NFS, CephFS, ...).
    directory: Path | None = None
    # Archives and their index are deleted this many days after they were received. None: the older
    # spelling `uploads.retention_days` (90 days unless set).
    retention_days: PositiveInt | None = None


class IngestConfig(Section):
    """lightspeed-ingest, the receiving side: uploads, the model registry and /admin."""

    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65535)
    state_dir: Path = Path("/var/lib/lightspeed-ingest")
    admin_key: SecretStr | None = None
    admin_key_file: Path | None = None
    admin_key_credential: str | None = "lightspeed-ingest-admin-key"
    # Wrong admin keys one source address may try; then 429, and one more try a minute.
    admin_wrong_keys_burst: PositiveInt = 5
    # HTTPS without a reverse proxy: both files (PEM), or neither (plain HTTP, e.g. behind a proxy).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    shutdown_timeout_seconds: float = Field(default=10.0, gt=0)
    timeouts: HttpTimeoutsConfig = HttpTimeoutsConfig()
    # Host names (without port) accepted on state-changing requests and pages; "*" for any.
    # Default: the loopback names when `host` is a loopback address, any otherwise.
    allowed_hosts: tuple[str, ...] | None = None
    retention_check_interval_seconds: float = Field(default=3600.0, gt=0)
    uploads: IngestUploadsConfig = IngestUploadsConfig()
    telemetry: IngestTelemetryConfig = IngestTelemetryConfig()
    archive: IngestArchiveConfig = IngestArchiveConfig()
    # PostgreSQL (database.url) for several nodes; without it, `<state_dir>/ingest.sqlite3`.
    database: DatabaseConfig = DatabaseConfig(password_credential="lightspeed-ingest-database-password")  # noqa: S106 - a name

    @property
    def archive_retention_days(self) -> int:
        """How long archives are kept: `archive.retention_days`, else `uploads.retention_days`."""
        return self.archive.retention_days or self.uploads.retention_days

    @model_validator(mode="after")
    def _one_archive_retention(self) -> Self:
        archive, uploads = self.archive.retention_days, self.uploads.retention_days
        if archive is not None and "retention_days" in self.uploads.model_fields_set and archive != uploads:
            raise ValueError(
                f"archive.retention_days ({archive}) and uploads.retention_days ({uploads}) disagree: "
                "set archive.retention_days only (uploads.retention_days is its older spelling)"
            )
        return self

    @model_validator(mode="after")
    def _tls_needs_both_files(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        return self
