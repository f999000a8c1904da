"""The `model_registration` event: the one schema behind consent, the queue view and validation.

The consent text lists exactly these fields, the queue view shows exactly
these columns, the client validates every event against this model before
queuing it, and the registry (lightspeed-ingest) validates against it again.
Adding a field changes `CONSENT_VERSION`, so consent given to the old list no
longer counts.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

EVENT_TYPE = "model_registration"
# A public model identifier: `name` or `org/name`. Never a path.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
ModelSource = Literal["sentence-transformers", "local_path", "nomic", "openai", "huggingface"]


def check_model_name(value: str) -> str:
    if not MODEL_NAME.fullmatch(value) or ".." in value:
        raise ValueError(
            "must be a public model identifier such as all-MiniLM-L6-v2 or org/name "
            "(letters, digits, '.', '_', '-', at most one '/'), never a file path"
        )
    return value


def _utc_timestamp(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO 8601 timestamp") from None
    if parsed.tzinfo is None or parsed.utcoffset() != timedelta(0):
        raise ValueError("must be in UTC (end in Z)")
    # One spelling per instant (`Z`, `+00:00`, `.000Z` are the same moment): the registry's duplicate key
    # is made from it, and five spellings of one event counted five times.
    return (
        parsed.astimezone(UTC)
        .isoformat(timespec="microseconds" if parsed.microsecond else "seconds")
        .replace("+00:00", "Z")
    )


def _sha256_or_none(value: str | None) -> str | None:
    if value is not None and not SHA256_HEX.fullmatch(value):
        raise ValueError("must be a lowercase hex SHA-256 digest")
    return value


def check_client_id(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value):
        raise ValueError("must be a lowercase UUID")
    return value


Label = Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:+-]+$")]


class ModelRegistrationEvent(BaseModel):
    """One event, exactly the fields the spec lists and nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: Literal["model_registration"] = Field(description="Always 'model_registration'.")
    model_name: Annotated[StrictStr, AfterValidator(check_model_name)] = Field(
        description="Public model identifier (Hugging Face id or short name); never a file path."
    )
    model_source: ModelSource = Field(description="Where the model came from (sentence-transformers, local_path, ...).")
    model_version: Label | None = Field(description="The model's version, if its package or files state one.")
    embedding_dimension: StrictInt | None = Field(
        ge=1, le=65_536, description="Length of the vectors the model produced in the test inference."
    )
    modalities: list[Literal["text", "image", "audio", "video"]] = Field(
        max_length=4, description="What the model embeds: text, image, or both."
    )
    distance_metric: Literal["cosine", "dot", "euclidean", "manhattan"] | None = Field(
        description="The similarity the model is meant to be compared with."
    )
    normalization: Literal["l2", "none"] | None = Field(
        description="Whether the vectors came out L2-normalized, measured from their norms."
    )
    load_success: StrictBool = Field(description="Whether the model loaded.")
    inference_success: StrictBool = Field(description="Whether a test inference on a fixed sentence worked.")
    device_type: Literal["cpu", "gpu"] = Field(description="The device the model ran on.")
    local_path_hash: Annotated[StrictStr | None, AfterValidator(_sha256_or_none)] = Field(
        description="SHA-256 of the model's local path, for local_path models; the path itself is never sent."
    )
    timestamp: Annotated[StrictStr, AfterValidator(_utc_timestamp)] = Field(
        description="When the event was created (UTC, ISO 8601)."
    )
    client_id: Annotated[StrictStr, AfterValidator(check_client_id)] = Field(
        description="A random id made when you enabled telemetry, used only to count each installation once."
    )

    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.timestamp.replace("Z", "+00:00"))


FIELD_NAMES: tuple[str, ...] = tuple(ModelRegistrationEvent.model_fields)


def _json_type(info: dict[str, Any]) -> str:
    if "anyOf" in info:
        kinds = [_json_type(option) for option in info["anyOf"]]
        return " or ".join(kind for kind in kinds if kind != "null") + " or null"
    if "enum" in info:
        return " | ".join(json.dumps(v) for v in info["enum"])
    if "const" in info:
        return json.dumps(info["const"])
    if info.get("type") == "array":
        return f"list of {_json_type(info.get('items', {}))}"
    return str(info.get("type", "any"))


def field_catalogue() -> list[dict[str, str]]:
    """Every field with its JSON type and description, in event order."""
    properties = ModelRegistrationEvent.model_json_schema()["properties"]
    return [
        {"name": name, "type": _json_type(properties[name]), "description": properties[name]["description"]}
        for name in FIELD_NAMES
    ]


CONSENT_VERSION = hashlib.sha256(json.dumps(field_catalogue(), sort_keys=True).encode()).hexdigest()[:16]
NEVER_SENT = (
    "file paths (only a SHA-256 of a local model path)",
    "credentials or API keys",
    "questions, answers, documents or any other user content",
    "user ids, IP addresses or host names",
)


def parse_event(
    event: Any, now: datetime | None = None, max_age_days: int | None = None
) -> tuple[ModelRegistrationEvent | None, list[str]]:
    """`event` parsed as a model_registration event, or None and why it is not one.

    `now` and `max_age_days` add the time rules the registry applies: not in
    the future (beyond 5 minutes of clock skew) and not older than the bound.
    """
    if not isinstance(event, dict):
        return None, ["event: must be a JSON object"]
    try:
        parsed = ModelRegistrationEvent.model_validate(event)
    except ValidationError as exc:
        return None, [f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}" for err in exc.errors()]
    if now is not None:
        created = parsed.created_at()
        if created > now + timedelta(minutes=5):
            return None, ["timestamp: is in the future"]
        if max_age_days is not None and created < now - timedelta(days=max_age_days):
            return None, [f"timestamp: is older than {max_age_days} days"]
    return parsed, []


def utc_timestamp(moment: datetime) -> str:
    """The event timestamp format: second precision, UTC, with Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
