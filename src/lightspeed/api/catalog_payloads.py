"""Bodies of /v1/config, /v1/providers, /v1/shields, /v1/tools and /v1/streaming_query/interrupt
(lightspeed-stack's shapes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from lightspeed.api.payloads import SUID_PATTERN, Body, is_suid


class StreamingInterruptRequest(Body):
    request_id: str = Field(
        description="The request_id of the stream's start event (a UUID)", json_schema_extra={"pattern": SUID_PATTERN}
    )

    @field_validator("request_id")
    @classmethod
    def _request_id(cls, value: str) -> str:
        if not is_suid(value):
            raise ValueError(f"Improper request ID {value}")  # lightspeed-stack's text
        return value


class StreamingInterruptResponse(BaseModel):
    request_id: str
    interrupted: bool
    message: str


class ProviderSummary(BaseModel):
    provider_id: str
    provider_type: str


class ProvidersListResponse(BaseModel):
    providers: dict[str, list[ProviderSummary]] = Field(description="Providers by API (here: inference)")


class ProviderResponse(BaseModel):
    api: str
    config: dict[str, Any] = Field(description="The provider's settings; secrets are ********")
    health: dict[str, Any] = Field(description='{"status": "OK" or "Error", "message"}')
    provider_id: str
    provider_type: str


class ShieldsResponse(BaseModel):
    shields: list[dict[str, Any]] = Field(description="Always empty: no shield guards the model here")


class ToolsResponse(BaseModel):
    tools: list[dict[str, Any]] = Field(description="Always empty: no MCP server offers tools here")


class ConfigurationResponse(BaseModel):
    configuration: dict[str, Any] = Field(
        description="This server's configuration in lightspeed-stack's Configuration shape; secrets are ********"
    )
