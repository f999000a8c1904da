"""The bodies of POST /v1/query and /v1/streaming_query: lightspeed-stack's QueryRequest, its attachments,
and what the answers carry (lightspeed-stack compatible; the wire table is tests/lightspeed/test_stack_wire.py)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from lightspeed.answers.providers.base import IMAGE
from lightspeed.api.payloads import Body, ConversationId, valid_uuid
from lightspeed_common.errors import INVALID_ATTRIBUTE, Unprocessable

TEXT_ATTACHMENT_TYPES = ("alert", "api object", "configuration", "error message", "event", "log", "stack trace")
TEXT_CONTENT_TYPES = ("text/plain", "application/json", "application/yaml", "application/xml")
# What each image content type's data starts with (lightspeed-stack checks these prefixes).
IMAGE_SIGNATURES = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG"}
ATTACHMENT_TYPES = frozenset({*TEXT_ATTACHMENT_TYPES, IMAGE})
ATTACHMENT_CONTENT_TYPES = frozenset({*TEXT_CONTENT_TYPES, *IMAGE_SIGNATURES})


def _choices(values: Iterable[str]) -> str:
    """A set of accepted values as lightspeed-stack prints its constants (`frozenset({...})`), sorted."""
    return "frozenset({" + ", ".join(repr(value) for value in sorted(values)) + "})"


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
                _image("image/png", "iVBOR[w-z0-9+/]"),  # base64 of b"\x89PNG", the prefix checked
                _image("image/jpeg", "/9j/"),  # of JPEG's
            ]
        }
    )

    attachment_type: str = Field(description=f"One of {', '.join(sorted(ATTACHMENT_TYPES))}")
    content_type: str = Field(description=f"One of {', '.join(sorted(ATTACHMENT_CONTENT_TYPES))}")
    content: str = Field(description="The text, or for attachment_type image the base64-encoded PNG or JPEG data")

    @model_validator(mode="after")
    def _image_consistent(self) -> Self:
        """lightspeed-stack's own checks as it parses the body (422 validation errors, its texts): an image
        content type goes with attachment_type image and the other way round, and image data is base64 of
        the format it declares."""
        is_image_type = self.content_type in IMAGE_SIGNATURES
        if is_image_type != (self.attachment_type == IMAGE):
            raise ValueError(
                "attachment_type and content_type are inconsistent: "
                f"attachment_type='{self.attachment_type}', content_type='{self.content_type}'"
            )
        if is_image_type:
            try:
                data = base64.b64decode(self.content, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"Invalid base64 content for image attachment: {exc}") from exc
            if not data.startswith(IMAGE_SIGNATURES[self.content_type]):
                raise ValueError(
                    f"Image content does not match declared content_type '{self.content_type}': invalid image data"
                )
        return self

    def check(self) -> None:
        """lightspeed-stack's checks after the body parses: a 422 `Invalid attribute value` naming the
        accepted values (its text prints them as a Python frozenset; here in sorted order)."""
        if self.attachment_type not in ATTACHMENT_TYPES:
            cause = f"Invalid attachment type {self.attachment_type}: must be one of {_choices(ATTACHMENT_TYPES)}"
            raise Unprocessable(INVALID_ATTRIBUTE, cause)
        if self.content_type not in ATTACHMENT_CONTENT_TYPES:
            cause = (
                f"Invalid attachment content type {self.content_type}: "
                f"must be one of {_choices(ATTACHMENT_CONTENT_TYPES)}"
            )
            raise Unprocessable(INVALID_ATTRIBUTE, cause)

    @property
    def size(self) -> int:
        """Bytes: the decoded image, or the text's UTF-8."""
        if self.attachment_type == IMAGE:
            return len(self.content) * 3 // 4 - self.content[-2:].count("=")
        return len(self.content.encode())


MEDIA_TYPES = ("application/json", "text/plain")


class SolrVectorSearchRequest(Body):
    """lightspeed-stack's inline Solr RAG options; accepted and ignored (no Solr here). A legacy
    filter-only object (`{"fq": [...]}`) is taken as `filters`, as lightspeed-stack takes it."""

    model_config = ConfigDict(frozen=True)

    mode: Literal["semantic", "hybrid", "lexical", "keyword"] | None = None
    filters: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_filters(cls, data: Any) -> Any:
        if isinstance(data, dict) and "filters" not in data and "mode" not in data:
            return {"mode": None, "filters": data}
        return data


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

    query: str  # an empty one too, as lightspeed-stack takes it
    conversation_id: ConversationId | None = None
    provider: str | None = None
    model: str | None = None
    system_prompt: str | None = None
    attachments: list[Attachment] | None = Field(
        default=None, json_schema_extra={"maxItems": 16}, description="At most answers.max_attachments (16 by default)"
    )
    # lightspeed-stack's further fields, with its semantics where they apply here (docs/api.md):
    no_tools: bool | None = Field(default=False, description="Accepted; this server uses no tools, ever")
    generate_topic_summary: bool | None = Field(
        default=True, description="A new conversation's topic summary is its first question's first line; false: none"
    )
    media_type: str | None = Field(
        default=None,
        json_schema_extra={"enum": [*MEDIA_TYPES, None]},
        description="text/plain streams the answer as plain text; application/json (the default) as SSE frames",
    )
    vector_store_ids: list[str] | None = Field(
        default=None,
        description="This server has no vector stores by id: [] retrieves nothing, any id is a 404; absent: the docs",
    )
    shield_ids: list[str] | None = Field(
        default=None, description="This server has no shields: [] or absent runs none, any id is a 404"
    )
    solr: SolrVectorSearchRequest | None = Field(default=None, description="Accepted and ignored: no Solr here")

    @field_validator("conversation_id")
    @classmethod
    def _conversation_id(cls, value: str | None) -> str | None:
        return None if value is None else valid_uuid(value)

    @model_validator(mode="after")
    def _provider_with_model(self) -> Self:
        if self.provider is not None and self.model is None:
            raise ValueError("Model must be specified if provider is specified")
        if self.model is not None and self.provider is None:
            raise ValueError("Provider must be specified if model is specified")
        return self

    @model_validator(mode="after")
    def _media_type(self) -> Self:
        if self.media_type is not None and self.media_type not in MEDIA_TYPES:
            raise ValueError(f"media_type must be either '{MEDIA_TYPES[0]}' or '{MEDIA_TYPES[1]}'")
        return self


class StreamFrame(BaseModel):
    """One server-sent event of /v1/streaming_query: a line `data: <this object as JSON>`, then a blank line.

    `start` carries conversation_id and request_id; `token` id and token; `turn_complete` the whole text;
    `end` referenced_documents, truncated (null) and the token counts (with available_quotas beside data);
    `error` status_code, response and cause; `interrupted` (after the last token of a stream its user
    interrupted) request_id. With media_type text/plain the answer streams as plain text instead.
    """

    media_type: ClassVar[str] = "text/event-stream"

    event: Literal["start", "token", "turn_complete", "end", "error", "interrupted"]
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
