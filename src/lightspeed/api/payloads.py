"""Request and response bodies of the HTTP API (lightspeed-stack compatible).

One pydantic model per body: it validates requests, documents them in
/openapi.json, and its errors become 422 lists of {type, loc, msg, input}.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from lightspeed.answers.providers.base import IMAGE
from lightspeed_common.errors import INVALID_ATTRIBUTE, RequestInvalid, Unprocessable


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


T = TypeVar("T", bound=BaseModel)


def parse_body(model: type[T], raw: bytes) -> T:
    """Validate raw JSON bytes against `model`, raising RequestInvalid with body-rooted locs."""
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False, include_context=False):
            loc = ["body", *err["loc"]]
            bad_json = err["type"] == "json_invalid"
            errors.append(
                {
                    "type": err["type"],
                    "loc": loc,
                    "msg": err["msg"],
                    # Echoing the raw text of a malformed body helps nobody and may be large.
                    "input": {} if bad_json else err["input"],
                }
            )
        raise RequestInvalid(errors) from None


def _valid_uuid(value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValueError(f"Improper conversation ID '{value}'") from None
    return value


TEXT_ATTACHMENT_TYPES = ("alert", "api object", "configuration", "error message", "event", "log", "stack trace")
TEXT_CONTENT_TYPES = ("text/plain", "application/json", "application/yaml", "application/xml")
# What each image content type's data starts with.
IMAGE_SIGNATURES = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}


def _choices(values: Iterable[str]) -> str:
    return str(sorted(values))


_BASE64 = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def _image(content_type: str, base64_start: str) -> JsonDict:
    """An image attachment as the document can say it: base64 whose data starts with the format's signature."""
    content: JsonDict = {"allOf": [{"pattern": _BASE64}, {"pattern": f"^{base64_start}"}]}
    return {
        "properties": {"attachment_type": {"const": IMAGE}, "content_type": {"const": content_type}, "content": content}
    }


class Attachment(Body):
    """Checked by `check()` after the body parses, as lightspeed-stack checks it: a 422 whose detail is
    `{"response": "Invalid attribute value", "cause"}`, one cause per problem. The document states the
    same rules (a text type with a text content type, or an image whose data is what it says)."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "properties": {
                        "attachment_type": {"enum": list(TEXT_ATTACHMENT_TYPES)},
                        "content_type": {"enum": list(TEXT_CONTENT_TYPES)},
                    }
                },
                _image("image/png", "iVBORw0KGgo"),  # base64 of PNG's signature
                _image("image/jpeg", "/9j/"),  # of JPEG's
            ]
        }
    )

    attachment_type: str = Field(description=f"One of {_choices((*TEXT_ATTACHMENT_TYPES, IMAGE))}")
    content_type: str = Field(description=f"One of {_choices((*TEXT_CONTENT_TYPES, *IMAGE_SIGNATURES))}")
    content: str = Field(description="The text, or for attachment_type image the base64-encoded PNG or JPEG data")

    def check(self) -> None:
        if self.attachment_type == IMAGE:
            self._check_image()
            return
        if self.attachment_type not in TEXT_ATTACHMENT_TYPES:
            cause = f"Invalid attachment type {self.attachment_type}: must be one of {_choices(TEXT_ATTACHMENT_TYPES)}"
            raise Unprocessable(INVALID_ATTRIBUTE, cause + " or 'image'")
        if self.content_type in IMAGE_SIGNATURES:
            cause = f"Invalid attachment type {self.attachment_type} for content type {self.content_type}"
            raise Unprocessable(INVALID_ATTRIBUTE, cause + ": image data needs attachment type 'image'")
        if self.content_type not in TEXT_CONTENT_TYPES:
            cause = (
                f"Invalid attachment content type {self.content_type}: must be one of {_choices(TEXT_CONTENT_TYPES)}"
            )
            raise Unprocessable(INVALID_ATTRIBUTE, cause)

    def _check_image(self) -> None:
        if self.content_type not in IMAGE_SIGNATURES:
            cause = f"Invalid content type {self.content_type} for an image attachment"
            raise Unprocessable(INVALID_ATTRIBUTE, f"{cause}: must be one of {_choices(IMAGE_SIGNATURES)}")
        try:
            data = base64.b64decode(self.content, validate=True)
        except binascii.Error:
            raise Unprocessable(
                INVALID_ATTRIBUTE, "Invalid image attachment: the content is not valid base64"
            ) from None
        if not data.startswith(IMAGE_SIGNATURES[self.content_type]):
            found = next((t for t, s in IMAGE_SIGNATURES.items() if data.startswith(s)), None)
            seen = f"it is {found} data" if found else "it is not PNG or JPEG data"
            raise Unprocessable(
                INVALID_ATTRIBUTE, f"Invalid image attachment: declared {self.content_type}, but {seen}"
            )

    @property
    def size(self) -> int:
        """Bytes: the decoded image, or the text's UTF-8."""
        if self.attachment_type == IMAGE:
            return len(self.content) * 3 // 4 - self.content[-2:].count("=")
        return len(self.content.encode())


UUID_PATTERN = "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
ConversationId = Annotated[str, Field(json_schema_extra={"format": "uuid", "pattern": UUID_PATTERN})]


class QueryRequest(Body):
    # The document states the provider+model rule too: either both or neither.
    # The document states the provider+model rule too: both (strings), or neither (absent or null).
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"provider": {"type": "null"}, "model": {"type": "null"}}},
                {
                    "required": ["provider", "model"],
                    "properties": {"provider": {"type": "string"}, "model": {"type": "string"}},
                },
            ]
        }
    )

    query: str = Field(min_length=1)
    conversation_id: ConversationId | None = None
    provider: str | None = None
    model: str | None = None
    system_prompt: str | None = None
    attachments: list[Attachment] | None = Field(
        default=None, json_schema_extra={"maxItems": 16}, description="At most answers.max_attachments (16 by default)"
    )
    media_type: Literal["text/plain", "application/json"] | None = None

    @field_validator("conversation_id")
    @classmethod
    def _conversation_id(cls, value: str | None) -> str | None:
        return None if value is None else _valid_uuid(value)

    @model_validator(mode="after")
    def _provider_with_model(self) -> Self:
        if self.provider is not None and self.model is None:
            raise ValueError("Model must be specified if provider is specified")
        if self.model is not None and self.provider is None:
            raise ValueError("Provider must be specified if model is specified")
        return self


class StreamFrame(BaseModel):
    """One server-sent event of /v1/streaming_query: a line `data: <this object as JSON>`, then a blank line.

    `start` carries conversation_id and request_id; `token` id and token; `turn_complete` the whole text;
    `end` referenced_documents, truncated and the token counts (with available_quotas beside data);
    `error` response and cause. With media_type text/plain the answer streams as plain text instead.
    """

    media_type: ClassVar[str] = "text/event-stream"

    event: Literal["start", "token", "turn_complete", "end", "error"]
    data: dict[str, Any]
    available_quotas: dict[str, Any] | None = None


class RagChunk(BaseModel):
    content: str
    source: str | None = None
    score: float | None = None


class ReferencedDocument(BaseModel):
    doc_url: str
    doc_title: str


class QueryResponse(BaseModel):
    conversation_id: str
    response: str
    rag_chunks: list[RagChunk]
    referenced_documents: list[ReferencedDocument]
    truncated: bool
    input_tokens: int
    output_tokens: int
    available_quotas: dict[str, int]
    tool_calls: list[dict[str, Any]]
    tool_results: list[dict[str, Any]]


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
    sentiment: StrictInt | None = Field(default=None, json_schema_extra={"enum": [-1, 1, None]})
    user_feedback: str | None = Field(default=None, max_length=4096)
    categories: list[FeedbackCategory] | None = None

    @field_validator("conversation_id")
    @classmethod
    def _conversation_id(cls, value: str) -> str:
        return _valid_uuid(value)

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
        has_text = bool(self.user_feedback and self.user_feedback.strip())
        if self.sentiment is None and not has_text and not self.categories:
            raise ValueError(
                "At least one form of feedback must be provided: 'sentiment', 'user_feedback', or 'categories'"
            )
        return self


class FeedbackResponse(BaseModel):
    response: str


class FeedbackStatusUpdate(Body):
    status: StrictBool


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
