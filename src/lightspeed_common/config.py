"""The configuration: one YAML file, loaded once into a frozen model.

The schema is the contract every daemon reads: the server's, the
collector's and the shared sections here, the ingest's in `config_ingest`,
what both HTTP daemons have in common in `config_base`.

`load_config(path)` is the only place that reads the file. Environment
variables `LIGHTSPEED__SECTION__KEY` override it. Validators check shape only;
directories are checked by `main()` after parsing, so every shipped config file
validates on any machine.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import (
    Field,
    HttpUrl,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from lightspeed_common.config_auth import AuthenticationConfig, AuthorizationConfig
from lightspeed_common.config_base import (
    ClientTlsConfig,
    DatabaseConfig,
    HttpTimeoutsConfig,
    ProxyConfig,
    Section,
)
from lightspeed_common.config_ingest import IngestConfig
from lightspeed_common.errors import ConfigError

ENV_PREFIX = "LIGHTSPEED__"


class ServiceConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    state_dir: Path = Path("/var/lib/lightspeed")
    max_request_bytes: PositiveInt = 1024 * 1024
    shutdown_timeout_seconds: float = Field(default=10.0, gt=0)
    # Groups of records the record writer process commits at once, one thread each (docs/records.md).
    record_writer_threads: PositiveInt = 4
    # Worker processes sharing the listening socket, under one main process (docs/scaling.md).
    workers: int = Field(default=1, ge=1, le=64)
    # Conversations, runtime settings and the telemetry queue: `<state_dir>/conversations.sqlite3` (one host,
    # any number of workers), or PostgreSQL (database.url) for API servers on several hosts.
    database: DatabaseConfig = DatabaseConfig(password_credential="lightspeed-database-password")  # noqa: S106
    timeouts: HttpTimeoutsConfig = HttpTimeoutsConfig()
    # Host names (without port) accepted on state-changing requests and pages; "*" for any.
    # Default: the loopback names when `host` is a loopback address, any otherwise.
    allowed_hosts: tuple[str, ...] | None = None


class DataCollectorConfig(Section):
    """The spec's `data_collector` block, keys and defaults exactly."""

    enabled: bool = False
    ingress_server_url: HttpUrl | None = None
    ingress_server_auth_token: SecretStr | None = None
    ingress_content_service_name: str | None = None
    collection_interval: PositiveInt = 7200
    cleanup_after_send: bool = True
    connection_timeout_seconds: PositiveInt = 30

    @model_validator(mode="after")
    def _enabled_needs_destination(self) -> Self:
        if self.enabled and self.ingress_server_url is None:
            raise ValueError("ingress_server_url is required when data_collector.enabled is true")
        if self.enabled and not self.ingress_content_service_name:
            raise ValueError("ingress_content_service_name is required when data_collector.enabled is true")
        return self


class UserDataCollectionConfig(Section):
    """The spec's `user_data_collection` section, keys and defaults exactly (and `retention_days`, ours)."""

    feedback_enabled: bool = False
    feedback_storage: Path | None = None
    transcripts_enabled: bool = False
    transcripts_storage: Path | None = None
    data_collector: DataCollectorConfig = DataCollectorConfig()
    # Ours (issue 26): records still in the storage folders (not yet shipped by the collector, e.g. while it
    # is off) are deleted this many days after they were written. None: kept until shipped, as the spec does.
    retention_days: PositiveInt | None = None

    @model_validator(mode="after")
    def _enabled_needs_storage(self) -> Self:
        if self.feedback_enabled and self.feedback_storage is None:
            raise ValueError("feedback_storage is required when feedback_enabled is true")
        if self.transcripts_enabled and self.transcripts_storage is None:
            raise ValueError("transcripts_storage is required when transcripts_enabled is true")
        return self


class ConversationsConfig(Section):
    """The conversation history in the store (issue 26)."""

    # A conversation idle this many days since its last turn is deleted with its turns. None: kept until
    # its user deletes it (or is erased).
    retention_days: PositiveInt | None = None
    # How often the server's retention pass runs (both this and user_data_collection.retention_days).
    retention_check_interval_seconds: float = Field(default=3600.0, gt=0)


class RedactionPattern(Section):
    name: str
    pattern: str
    replacement: str = "[REDACTED]"

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class RedactionConfig(Section):
    """What is removed from questions before they reach disk."""

    use_default_patterns: bool = True
    patterns: tuple[RedactionPattern, ...] = ()


class LocalProviderConfig(Section):
    documents_dir: Path = Path("docs")
    embedding_model_path: Path | None = None
    top_k: PositiveInt = 3
    passage_chars: PositiveInt = 700
    # Below this relevance (half the best passage's cosine, half the share of the question's
    # IDF-weighted terms it contains, 0 to 1) the question is not answered from the documents:
    # bench/answers_eval.py separates its answerable and unanswerable questions at 0.42 to 0.45.
    min_score: float = Field(default=0.43, ge=0, le=1)


class OpenAIProviderConfig(Section):
    base_url: HttpUrl | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    api_key_credential: str | None = "lightspeed-openai-api-key"
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_tokens: PositiveInt = 1024
    tls: ClientTlsConfig = ClientTlsConfig()
    proxy: ProxyConfig = ProxyConfig()


class AnswersConfig(Section):
    provider: Literal["local", "openai"] = "local"
    # The earlier turns a follow-up question carries to the provider, most recent first, up to this many
    # characters of questions and answers (the OpenAI-compatible provider sends them as messages).
    history_max_chars: int = Field(default=16_000, ge=0)
    # A question's cost is bounded by its length: longer (query and system_prompt together) is a 413
    # "Prompt is too long", as lightspeed-stack answers it.
    max_prompt_chars: PositiveInt = 32_000
    # Attachments per question, and their total size (text bytes, decoded image bytes): 422 / 413 past them.
    max_attachments: PositiveInt = 16
    max_attachments_bytes: PositiveInt = 256 * 1024
    # Threads that embed and search questions, and how many of them one user's questions may hold at once
    # (the user's further questions wait for their own): one user cannot occupy every thread.
    retrieval_threads: PositiveInt = 4
    max_concurrent_per_user: PositiveInt = 2
    local: LocalProviderConfig = LocalProviderConfig()
    openai: OpenAIProviderConfig = OpenAIProviderConfig()

    @model_validator(mode="after")
    def _openai_needs_endpoint(self) -> Self:
        if self.provider == "openai" and (self.openai.base_url is None or not self.openai.model):
            raise ValueError("answers.openai.base_url and answers.openai.model are required")
        return self


class RetryConfig(Section):
    """Upload backoff: exponential with jitter, bounded in attempts and in time."""

    initial_seconds: float = Field(default=1.0, ge=0)
    max_seconds: float = Field(default=300.0, ge=0)
    jitter_seconds: float = Field(default=1.0, ge=0)
    max_attempts: PositiveInt = 8
    max_elapsed_seconds: float = Field(default=1800.0, gt=0)
    max_retry_after_seconds: float = Field(default=3600.0, ge=0)


class CollectorIdentityConfig(Section):
    """Who the collector is to the ingress: lightspeed-to-dataverse-exporter's modes (docs/collector.md)."""

    mode: Literal["manual", "openshift", "sso"] = "manual"
    # What the User-Agent names after `cluster/`. Default: manual, this installation's id; openshift, the
    # content of cluster_id_file; sso, the token's preferred_username or sub.
    identity_id: str | None = None
    # The User-Agent is `<user_agent_product>/user-data-collection cluster/<identity>`.
    user_agent_product: str = Field(default="lightspeed-collector", pattern=r"^[A-Za-z0-9._-]+$")
    # openshift: a pull secret (.dockerconfigjson), and the cluster id (`oc get clusterversion version
    # -o jsonpath='{.spec.clusterID}'`) unless identity_id gives it.
    pull_secret_file: Path | None = None
    pull_secret_credential: str | None = "lightspeed-pull-secret"  # noqa: S105 - a credential name
    cluster_id_file: Path | None = None
    # sso: an OAuth2 client-credentials grant; optionally the token is exchanged at exchange_url for the
    # ingress token (`auths.cloud.openshift.com.auth` of the answer).
    token_url: HttpUrl | None = None
    client_id: str | None = None
    client_secret_file: Path | None = None
    client_secret_credential: str | None = "lightspeed-sso-client-secret"  # noqa: S105 - a credential name
    scope: str | None = None
    exchange_url: HttpUrl | None = None

    @model_validator(mode="after")
    def _sso_needs_client(self) -> Self:
        if self.mode == "sso" and (self.token_url is None or not self.client_id):
            raise ValueError("mode sso needs token_url and client_id")
        return self


class CollectorConfig(Section):
    """lightspeed-collector's own settings, beyond the spec's `data_collector` block."""

    # The spool must be on the same file system as both storage directories
    # (claiming is a rename); default: `spool` beside feedback_storage.
    spool_dir: Path | None = None
    max_batch_bytes: PositiveInt = 50 * 1024 * 1024  # compressed; ingress accepts 100 MiB
    max_batch_files: PositiveInt = 20_000
    ingress_token_file: Path | None = None
    ingress_token_credential: str | None = "lightspeed-ingress-token"  # noqa: S105 - a credential name, not a secret
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    flush_on_stop: bool = True
    retry: RetryConfig = RetryConfig()
    identity: CollectorIdentityConfig = CollectorIdentityConfig()
    # How the ingress and the SSO endpoints are reached: a private CA, mTLS, a proxy.
    tls: ClientTlsConfig = ClientTlsConfig()
    proxy: ProxyConfig = ProxyConfig()


class EmbeddingConfig(Section):
    """Where registered embedding models are looked up by name; nothing is downloaded."""

    # `<models_dir>/<org>/<name>` or `<models_dir>/<name>`; default `<state_dir>/models`.
    models_dir: Path | None = None


_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "[::1]", "localhost")


class TelemetryConfig(Section):
    """Where opt-in model telemetry goes and how it is bounded.

    Whether telemetry is on is not configured here: that is the operator's
    consent, given through the API, the CLI or /settings, and stored in the
    state directory. Without `registry_url` nothing can ever be sent.
    """

    registry_url: HttpUrl | None = None
    registry_token: SecretStr | None = None
    registry_token_file: Path | None = None
    registry_token_credential: str | None = "lightspeed-telemetry-token"  # noqa: S105 - a credential name
    ca_file: Path | None = None
    send_interval_seconds: PositiveInt = 86_400
    first_send_delay_seconds: float = Field(default=300.0, ge=0)
    batch_max_events: int = Field(default=100, ge=1, le=1000)
    batch_max_bytes: int = Field(default=256 * 1024, ge=4096)
    queue_max_events: PositiveInt = 10_000
    queue_max_bytes: int = Field(default=8 * 1024 * 1024, ge=4096)
    event_max_age_days: PositiveInt = 21
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    # After a send that failed its retries: wait this long, doubling per failure, at most send_interval.
    failure_backoff_seconds: float = Field(default=300.0, gt=0)
    # A stop never waits longer than this for the last send.
    shutdown_flush_seconds: float = Field(default=2.0, ge=0, le=2.0)
    retry: RetryConfig = RetryConfig(
        initial_seconds=1.0,
        max_seconds=30.0,
        max_attempts=4,
        max_elapsed_seconds=120.0,
        max_retry_after_seconds=60.0,
    )

    @model_validator(mode="after")
    def _https_unless_loopback(self) -> Self:
        url = self.registry_url
        if url is not None and url.scheme != "https" and url.host not in _LOOPBACK_HOSTS:
            raise ValueError("registry_url must use https (plain http is allowed only for 127.0.0.1, ::1, localhost)")
        return self


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    # Long work (a collector backlog, the first index build) logs a `progress` event this often when it
    # draws no bar (not on a terminal, or under systemd).
    progress_interval_seconds: float = Field(default=5.0, gt=0)


class AppConfig(BaseSettings):
    """The whole configuration of the daemons (each reads its own sections)."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
    )

    service: ServiceConfig = ServiceConfig()
    authentication: AuthenticationConfig = AuthenticationConfig()
    authorization: AuthorizationConfig = AuthorizationConfig()
    user_data_collection: UserDataCollectionConfig = UserDataCollectionConfig()
    conversations: ConversationsConfig = ConversationsConfig()
    redaction: RedactionConfig = RedactionConfig()
    answers: AnswersConfig = AnswersConfig()
    collector: CollectorConfig = CollectorConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    ingest: IngestConfig = IngestConfig()
    logging: LoggingConfig = LoggingConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first so LIGHTSPEED__SECTION__KEY overrides the YAML file,
        # which arrives as the init arguments.
        return (env_settings, init_settings)


def load_config(path: Path) -> AppConfig:
    """Read and validate the YAML file at `path`.

    Raises ConfigError naming the file and every offending key (unknown keys,
    wrong types, missing requirements); secrets never appear in the message.
    """
    try:
        # From the open file, so a YAML error's position names it (text parses as "<unicode string>").
        with path.open(encoding="utf-8") as stream:
            raw = yaml.safe_load(stream)
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"not valid YAML: {exc}"]) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, ["the top level must be a mapping of sections"])
    return config_from_mapping(raw, source=path)


def config_from_mapping(raw: dict[str, Any], source: Path | str = "<mapping>") -> AppConfig:
    """Validate an already parsed mapping (tests build configs this way)."""
    try:
        return AppConfig(**raw)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(err) for err in exc.errors()]) from None


def _describe(err: Any) -> str:
    key = ".".join(str(part) for part in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    # The message only: the input may be a secret.
    return f"{key}: {err['msg']}"
