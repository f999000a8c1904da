"""Request and response bodies of the HTTP API (lightspeed-stack compatible).

One pydantic model per body: it validates requests, documents them in
/openapi.json, and its errors become 422 lists of {type, loc, msg, input}.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from lightspeed_common.errors import RequestInvalid


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


T = TypeVar("T", bound=BaseModel)


def _context(ctx: dict[str, Any]) -> dict[str, Any]:
    """An error's `ctx` as FastAPI sends it: an exception in it becomes `{}` (its JSON encoder's reading of
    an object with no fields), anything else stays."""
    return {key: {} if isinstance(value, BaseException) else value for key, value in ctx.items()}


def parse_body(model: type[T], raw: bytes) -> T:
    """Validate raw JSON bytes against `model`, raising RequestInvalid with body-rooted locs: the items of
    lightspeed-stack's (FastAPI's) 422, `{type, loc, msg, input}` and `ctx` where pydantic gives one."""
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False):
            bad_json = err["type"] == "json_invalid"
            item = {
                "type": err["type"],
                "loc": ["body", *err["loc"]],
                "msg": err["msg"],
                # Echoing the raw text of a malformed body helps nobody and may be large.
                "input": {} if bad_json else err["input"],
            }
            if "ctx" in err:
                item["ctx"] = _context(err["ctx"])
            errors.append(item)
        raise RequestInvalid(errors) from None


def is_suid(value: str) -> bool:
    """lightspeed-stack's `check_suid`, rule for rule: a UUID, or 48 hexadecimal digits (llama-stack's ids),
    optionally after `conv_`. Ids this server makes are UUIDs; the others are well-formed but unknown."""
    digits = value.removeprefix("conv_")
    if len(digits) == 48:
        try:
            int(digits, 16)
        except ValueError:
            return False
        return True
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def valid_uuid(value: str, quoted: bool = True) -> str:
    """`value` if it is a well-formed id (`is_suid`); lightspeed-stack's ValueError otherwise (its query
    quotes the id, its feedback does not)."""
    if not is_suid(value):
        shown = f"'{value}'" if quoted else value
        raise ValueError(f"Improper conversation ID {shown}")
    return value


UUID_PATTERN = "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
# What `is_suid` takes, as the document can say it: a UUID, or 48 hex digits (optionally after conv_).
SUID_PATTERN = f"(?:{UUID_PATTERN})|^(?:conv_)?[0-9a-fA-F]{{48}}$"
ConversationId = Annotated[str, Field(json_schema_extra={"format": "uuid", "pattern": UUID_PATTERN})]


class FeedbackCategory(StrEnum):
    INCORRECT = "incorrect"
    NOT_RELEVANT = "not_relevant"
    INCOMPLETE = "incomplete"
    OUTDATED_INFORMATION = "outdated_information"
    UNSAFE = "unsafe"
    OTHER = "other"


# "At least one form of feedback", as the document can say it: a sentiment, a comment that is not blank,
# or a category.
_SOME_FEEDBACK: JsonDict = {
    "anyOf": [
        {"required": ["sentiment"], "properties": {"sentiment": {"type": "integer"}}},
        {"required": ["user_feedback"], "properties": {"user_feedback": {"type": "string", "pattern": "\\S"}}},
        {"required": ["categories"], "properties": {"categories": {"type": "array", "minItems": 1}}},
    ]
}


class FeedbackRequest(Body):
    model_config = ConfigDict(json_schema_extra=_SOME_FEEDBACK)

    conversation_id: ConversationId
    user_question: str
    llm_response: str
    sentiment: int | None = Field(default=None, json_schema_extra={"enum": [-1, 1, None]})
    user_feedback: str | None = Field(default=None, max_length=4096)
    categories: list[FeedbackCategory] | None = None

    @field_validator("conversation_id")
    @classmethod
    def _conversation_id(cls, value: str) -> str:
        return valid_uuid(value, quoted=False)

    @field_validator("sentiment")
    @classmethod
    def _sentiment(cls, value: int | None) -> int | None:
        if value not in (None, -1, 1):
            raise ValueError(f"Improper sentiment value of {value}, needs to be -1 or 1")
        return value

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: list[FeedbackCategory] | None) -> list[FeedbackCategory] | None:
        if not value:
            return None
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _some_feedback(self) -> Self:
        # As lightspeed-stack counts it: any user_feedback but "" is feedback (blanks too).
        if self.sentiment is None and not self.user_feedback and self.categories is None:
            raise ValueError(
                "At least one form of feedback must be provided: 'sentiment', 'user_feedback', or 'categories'"
            )
        return self


class FeedbackResponse(BaseModel):
    response: str


class FeedbackStatusUpdate(Body):
    status: bool = False  # lightspeed-stack's default, and its lax reading (true, "true", 1)


class FeedbackStatus(BaseModel):
    functionality: str
    status: dict[str, bool]


class FeedbackStatusChange(BaseModel):
    previous_status: bool
    updated_status: bool
    updated_by: str
    timestamp: str


class FeedbackStatusUpdateResponse(BaseModel):
    status: FeedbackStatusChange


class ErrorDetail(BaseModel):
    response: str
    cause: str


class ErrorResponse(BaseModel):
    """lightspeed-stack's error body as its server sends it: `detail` only (its schemas' `status_code`
    never reaches the wire)."""

    detail: ErrorDetail


class ValidationErrorItem(BaseModel):
    type: str
    loc: list[str | int]
    msg: str
    input: Any
    ctx: dict[str, Any] | None = Field(default=None, description="What the check compared against, when it says")


class ValidationErrorResponse(BaseModel):
    detail: list[ValidationErrorItem]


class UnprocessableResponse(RootModel[ValidationErrorResponse | ErrorResponse]):
    """A 422: a body that fails its model (`detail` a list), or a value the server refuses after parsing
    it (an attachment, as lightspeed-stack answers: `detail` one `{response, cause}`)."""


class LivenessResponse(BaseModel):
    alive: bool


class AuthorizedResponse(BaseModel):
    user_id: str
    username: str
    skip_userid_check: bool


class InfoResponse(BaseModel):
    name: str
    service_version: str
    llama_stack_version: str


class ProviderHealthStatus(BaseModel):
    provider_id: str
    status: str
    message: str | None = None


class ReadinessResponse(BaseModel):
    ready: bool
    reason: str
    overall_status: Literal["healthy", "degraded", "unhealthy"]
    impacts: list[str] | None
    providers: list[ProviderHealthStatus]


class ModelInfo(BaseModel):
    identifier: str
    metadata: dict[str, Any]
    api_model_type: str
    provider_id: str
    type: str
    provider_resource_id: str
    model_type: Literal["llm", "embedding"]


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
