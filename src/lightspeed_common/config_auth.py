"""Who may call the API server: the `authentication` and `authorization` sections.

Key names and validation texts are lightspeed-stack's (`jwk_config`, `jwt_configuration`,
`role_rules`, `access_rules`), so its configuration ports as is; what is ours is marked.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self

from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.parser import parse as parse_jsonpath
from pydantic import AnyHttpUrl, Field, model_validator

from lightspeed_common.config_base import ClientTlsConfig, Section


class ApiKeyAuthConfig(Section):
    """Where the api-key module finds its keys: a file, or a systemd credential."""

    keys_file: Path | None = None
    credential: str | None = "lightspeed-api-keys"


class JsonPathOperator(StrEnum):
    EQUALS = "equals"
    CONTAINS = "contains"
    IN = "in"
    MATCH = "match"


class JwtRoleRule(Section):
    """Roles granted when the values a JSONPath selects from the claims satisfy the operator."""

    jsonpath: str
    operator: JsonPathOperator
    negate: bool = False
    value: Any
    roles: tuple[str, ...]

    @model_validator(mode="after")
    def _valid(self) -> Self:
        try:
            parse_jsonpath(self.jsonpath)
        except JSONPathError as exc:
            raise ValueError(f"Invalid JSONPath expression: {self.jsonpath}: {exc}") from None
        if not self.roles:
            raise ValueError("At least one role must be specified in the rule")
        if len(self.roles) != len(set(self.roles)):
            raise ValueError("Roles must be unique in the rule")
        if "*" in self.roles:
            raise ValueError(
                "The wildcard '*' role is not allowed in role rules, everyone automatically gets this role"
            )
        if self.operator == JsonPathOperator.MATCH:
            if not isinstance(self.value, str):
                raise ValueError(f"MATCH operator requires a string pattern, {type(self.value).__name__}")
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"Invalid regex pattern for MATCH operator: {self.value}: {exc}") from None
        return self


class JwtConfiguration(Section):
    user_id_claim: str = "user_id"
    username_claim: str = "username"
    role_rules: tuple[JwtRoleRule, ...] = ()


# Asymmetric signatures only: an HMAC algorithm would let anyone holding the public key sign.
JwtAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]


class JwkConfiguration(Section):
    url: AnyHttpUrl
    jwt_configuration: JwtConfiguration = JwtConfiguration()
    # Ours. The algorithms a token may be signed with.
    algorithms: tuple[JwtAlgorithm, ...] = ("RS256", "ES256")
    # Ours. Clock skew allowed on exp/nbf/iat.
    leeway_seconds: float = Field(default=30.0, ge=0, le=600)
    # Ours. How long a fetched key set is used before it is fetched again (a failed fetch keeps the old one).
    cache_seconds: float = Field(default=3600.0, gt=0)
    # Ours. A token naming a key id the set does not hold fetches the set again at most this often, so
    # forged key ids cannot make this server hammer the identity provider.
    refresh_interval_seconds: float = Field(default=60.0, gt=0)
    # Ours. How long one fetch of the key set may take.
    fetch_timeout_seconds: float = Field(default=5.0, gt=0)
    # Ours, off unless set: the `aud` the token must name, and its `iss`.
    audience: str | None = None
    issuer: str | None = None
    # Ours: how the JWKS URL's server is checked (an identity provider behind a private CA, mTLS).
    tls: ClientTlsConfig = ClientTlsConfig()


class AuthenticationConfig(Section):
    module: Literal["noop", "noop-with-token", "api-key", "jwk-token"] = "noop"
    default_user_id: str = "00000000-0000-0000-0000-000"
    default_username: str = "lightspeed-user"
    api_key: ApiKeyAuthConfig = ApiKeyAuthConfig()
    jwk_config: JwkConfiguration | None = None

    @model_validator(mode="after")
    def _jwk_needs_config(self) -> Self:
        if self.module == "jwk-token" and self.jwk_config is None:
            raise ValueError("JWK configuration must be specified when using JWK token authentication")
        return self


class Action(StrEnum):
    """What a route lets its caller do: lightspeed-stack's action names, then ours."""

    ADMIN = "admin"
    LIST_OTHERS_CONVERSATIONS = "list_other_conversations"
    READ_OTHERS_CONVERSATIONS = "read_other_conversations"
    QUERY_OTHERS_CONVERSATIONS = "query_other_conversations"
    DELETE_OTHERS_CONVERSATIONS = "delete_other_conversations"
    QUERY = "query"
    RESPONSES = "responses"
    STREAMING_QUERY = "streaming_query"
    GET_CONVERSATION = "get_conversation"
    LIST_CONVERSATIONS = "list_conversations"
    DELETE_CONVERSATION = "delete_conversation"
    UPDATE_CONVERSATION = "update_conversation"
    FEEDBACK = "feedback"
    GET_MODELS = "get_models"
    GET_TOOLS = "get_tools"
    GET_SKILLS = "get_skills"
    GET_SHIELDS = "get_shields"
    LIST_PROVIDERS = "list_providers"
    GET_PROVIDER = "get_provider"
    LIST_RAGS = "list_rags"
    GET_RAG = "get_rag"
    GET_METRICS = "get_metrics"
    GET_CONFIG = "get_config"
    INFO = "info"
    MODEL_OVERRIDE = "model_override"
    # lightspeed-stack's, for endpoints this server does not have: accepted so its rules port unchanged.
    RLSAPI_V1_INFER = "rlsapi_v1_infer"
    REGISTER_MCP_SERVER = "register_mcp_server"
    LIST_MCP_SERVERS = "list_mcp_servers"
    DELETE_MCP_SERVER = "delete_mcp_server"
    A2A_AGENT_CARD = "a2a_agent_card"
    A2A_TASK_EXECUTION = "a2a_task_execution"
    A2A_MESSAGE = "a2a_message"
    A2A_JSONRPC = "a2a_jsonrpc"
    MANAGE_VECTOR_STORES = "manage_vector_stores"
    READ_VECTOR_STORES = "read_vector_stores"
    MANAGE_FILES = "manage_files"
    MANAGE_PROMPTS = "manage_prompts"
    READ_PROMPTS = "read_prompts"
    MANAGE_SAVED_PROMPTS = "manage_saved_prompts"
    # Ours: the routes lightspeed-stack does not have, and PUT /v1/feedback/status (`admin` there).
    MANAGE_FEEDBACK = "manage_feedback"
    GET_EMBEDDING_MODELS = "get_embedding_models"
    MANAGE_EMBEDDING_MODELS = "manage_embedding_models"
    GET_TELEMETRY = "get_telemetry"
    MANAGE_TELEMETRY = "manage_telemetry"
    VIEW_SETTINGS = "view_settings"


class AccessRule(Section):
    role: str
    actions: tuple[Action, ...]

    @model_validator(mode="after")
    def _admin_alone(self) -> Self:
        if Action.ADMIN in self.actions and len(self.actions) > 1:
            raise ValueError("Access rule with 'admin' action cannot have other actions")
        return self


class AuthorizationConfig(Section):
    """Roles to actions. Empty: the built-in policy (every user the user actions, the admin role all)."""

    access_rules: tuple[AccessRule, ...] = ()
