"""Bodies of the settings API: embedding models and telemetry (validation and /openapi.json)."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictBool, field_validator, model_validator

from lightspeed.api.payloads import Body, ErrorDetail, ValidationErrorResponse
from lightspeed.models.sources import LOADABLE_SOURCES
from lightspeed_common.telemetry_schema import MODEL_NAME, ModelSource, check_model_name


class EmbeddingModelRegistration(Body):
    # The document states the path rule too: local_path (absolute) exactly when model_source is local_path.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"required": ["model_source"], "properties": {"model_source": {"const": "local_path"}}},
            "then": {"required": ["local_path"], "properties": {"local_path": {"type": "string", "pattern": "^/"}}},
            "else": {"properties": {"local_path": {"type": "null"}}},
        }
    )

    model_name: str = Field(
        description="Public identifier: a Hugging Face id or a short name; never a path.",
        json_schema_extra={"pattern": f"^{MODEL_NAME.pattern}$", "maxLength": 193},
    )
    # The sources this server can load offline (telemetry's schema also knows nomic, which it refuses).
    model_source: ModelSource = Field(json_schema_extra={"enum": list(LOADABLE_SOURCES)})
    local_path: str | None = Field(default=None, max_length=4096, description="For local_path models: a directory.")
    activate: StrictBool = False

    @field_validator("model_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_model_name(value)

    @model_validator(mode="after")
    def _path_matches_source(self) -> Self:
        if self.model_source not in LOADABLE_SOURCES:
            raise ValueError(
                f"model_source '{self.model_source}' cannot be loaded offline by this server; "
                "use sentence-transformers (an installed model) or local_path (a directory)"
            )
        if self.model_source == "local_path":
            if not self.local_path:
                raise ValueError("local_path is required when model_source is local_path")
            if not self.local_path.startswith("/"):
                raise ValueError("local_path must be an absolute path")
        elif self.local_path is not None:
            raise ValueError("local_path applies only to model_source local_path")
        return self


class EmbeddingModelActivation(Body):
    model_name: str = Field(min_length=1, max_length=200)


class PurgeResult(BaseModel):
    purged: int = Field(description="How many queued events were deleted.")


class TelemetryUpdate(Body):
    # Enabling needs the consent version, as the document can say it.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"enabled": {"const": True}}},
            "then": {
                "required": ["consent_version"],
                "properties": {"consent_version": {"type": "string", "minLength": 1}},
            },
        }
    )

    enabled: StrictBool
    consent_version: str | None = Field(
        default=None, max_length=64, description="The version GET /v1/telemetry/consent returned; needed to enable."
    )

    @model_validator(mode="after")
    def _consent_to_enable(self) -> Self:
        if self.enabled and not self.consent_version:
            raise ValueError("consent_version is required to enable telemetry: review GET /v1/telemetry/consent first")
        return self


class Loose(BaseModel):
    """A documented response whose fields are listed in docs/api.md."""

    model_config = ConfigDict(extra="allow")


class EmbeddingModelInfo(Loose):
    model_name: str
    model_source: str
    status: Literal["ready", "failed"]
    active: bool
    embedding_dimension: int | None = None


class EmbeddingModelList(Loose):
    active: str
    default: str
    activation: dict[str, Any] | None
    models: list[EmbeddingModelInfo]


class EmbeddingModelRegistered(Loose):
    model: EmbeddingModelInfo
    telemetry: dict[str, Any]
    activation: dict[str, Any] | None


class EmbeddingModelUnusable(EmbeddingModelRegistered):
    """422: the model was registered as failed; why, and what was stored."""

    detail: ErrorDetail
    error_code: str


class RegistrationRefused(RootModel[ValidationErrorResponse | EmbeddingModelUnusable]):
    """422: a malformed request (a list of problems), or a model that cannot be used."""


class ActivationStarted(Loose):
    activation: dict[str, Any]


class TelemetryStatus(Loose):
    enabled: bool
    disabled_reason: str | None
    client_id: str | None


class ConsentDocument(Loose):
    version: str
    fields: list[dict[str, str]]


class TelemetryQueueView(Loose):
    fields: list[str]
    events: list[dict[str, Any]]


class SendResult(Loose):
    result: str


class ErasedCounts(BaseModel):
    """What an erasure removed on this side, per place."""

    conversations: int
    turns: int
    transcripts: int
    feedback: int


class UserDataErased(BaseModel):
    user_id: str
    erased: ErasedCounts
    # The collector drops the user's records from batches not yet sent and tells the ingest.
    collector_notified: bool


class UserDataExport(BaseModel):
    """A user's data on this side; the records as they were written."""

    model_config = ConfigDict(extra="forbid")

    user_id: str
    exported_at: str
    conversations: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    transcripts: list[dict[str, Any]]


class AuditEventView(BaseModel):
    at: str
    action: str
    subject: str
    requested_by: str
    counts: dict[str, int]


class AuditTrail(BaseModel):
    events: list[AuditEventView]
