"""What this server is made of, in lightspeed-stack's shapes: /v1/config, /v1/providers, /v1/shields, /v1/tools.

We run no Llama Stack, so the "providers" are our own: the answer provider the config chose (`local`
or `openai`) and the sentence-transformers model retrieval uses, both under the `inference` API as
lightspeed-stack lists its own. Shields and tools are real lists, and empty: no question-validity or
input-redaction shield guards the model (our redaction scrubs the records we store), and no MCP server
offers tools.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lightspeed.api.state import CONFIG, SERVER
from lightspeed.store.sqlite import DATABASE_FILE
from lightspeed_common.config import AppConfig
from lightspeed_common.errors import NotFound

MASK = "********"
INFERENCE = "inference"
PROVIDER_TYPES = {
    "local": "inline::lightspeed-extractive",
    "openai": "remote::openai",
    "sentence-transformers": "inline::sentence-transformers",
}


def _masked(value: object) -> str | None:
    return MASK if value else None


def _provider_config(app: web.Application, provider_id: str) -> dict[str, Any]:
    """A provider's settings as configured, with every secret replaced by MASK."""
    answers = app[CONFIG].answers
    if provider_id == "openai":
        openai = answers.openai
        return {
            "base_url": str(openai.base_url) if openai.base_url else None,
            "model": openai.model,
            "api_key": _masked(openai.api_key or openai.api_key_file),
            "timeout_seconds": openai.timeout_seconds,
            "max_tokens": openai.max_tokens,
        }
    if provider_id == "local":
        local = answers.local
        return {"documents_dir": str(local.documents_dir), "top_k": local.top_k, "min_score": local.min_score}
    embedder = app[SERVER].answers.index.embedder
    return {"model": embedder.name, "embedding_dimension": embedder.dimension}


def _provider_ids(app: web.Application) -> list[str]:
    return [app[SERVER].answers.provider.name, "sentence-transformers"]


async def providers(request: web.Request) -> web.Response:
    """GET /v1/providers: `{"providers": {"inference": [{provider_id, provider_type}]}}`."""
    app = request.app
    listed = [{"provider_id": p, "provider_type": PROVIDER_TYPES[p]} for p in _provider_ids(app)]
    return web.json_response({"providers": {INFERENCE: listed}})


async def provider(request: web.Request) -> web.Response:
    """GET /v1/providers/{provider_id}: its type, its settings (secrets masked) and its health now."""
    app = request.app
    provider_id = request.match_info["provider_id"]
    if provider_id not in _provider_ids(app):
        raise NotFound("Provider not found", f"Provider with ID {provider_id} does not exist")
    reason = (
        await app[SERVER].answers.provider.unready_reason()
        if provider_id == app[SERVER].answers.provider.name
        else None
    )
    health = {"status": "Error", "message": reason} if reason else {"status": "OK", "message": "Healthy"}
    body = {
        "api": INFERENCE,
        "config": _provider_config(app, provider_id),
        "health": health,
        "provider_id": provider_id,
        "provider_type": PROVIDER_TYPES[provider_id],
    }
    return web.json_response(body)


async def shields(request: web.Request) -> web.Response:
    return web.json_response({"shields": []})


async def tools(request: web.Request) -> web.Response:
    return web.json_response({"tools": []})


def stack_configuration(config: AppConfig) -> dict[str, Any]:
    """Our configuration in lightspeed-stack's `Configuration` shape (what maps; secrets masked)."""
    collection, answers, auth = config.user_data_collection, config.answers, config.authentication
    inference: dict[str, Any] = {"default_provider": answers.provider, "default_model": None}
    if answers.provider == "openai":
        openai = answers.openai
        inference["default_model"] = openai.model
        extra = {"base_url": str(openai.base_url), "api_key": _masked(openai.api_key or openai.api_key_file)}
        inference["providers"] = [{"type": "openai", "id": "openai", "allowed_models": [openai.model], "extra": extra}]
    else:
        inference["default_model"] = "extractive"
    return {
        "name": "lightspeed",
        "service": {"host": config.service.host, "port": config.service.port, "auth_enabled": auth.module != "noop"},
        "llama_stack": {"url": None, "api_key": None, "use_as_library_client": None},
        "user_data_collection": {
            "feedback_enabled": collection.feedback_enabled,
            "feedback_storage": str(collection.feedback_storage) if collection.feedback_storage else None,
            "transcripts_enabled": collection.transcripts_enabled,
            "transcripts_storage": str(collection.transcripts_storage) if collection.transcripts_storage else None,
        },
        "authentication": _authentication(config),
        "authorization": _authorization(config),
        "inference": inference,
        "conversation_cache": _conversation_store(config),
    }


def _authentication(config: AppConfig) -> dict[str, Any]:
    """The module, and jwk-token's lightspeed-stack keys (our extensions left out)."""
    auth = config.authentication
    jwk = auth.jwk_config
    if jwk is None:
        return {"module": auth.module}
    claims = jwk.jwt_configuration
    jwt_configuration = {
        "user_id_claim": claims.user_id_claim,
        "username_claim": claims.username_claim,
        "role_rules": [rule.model_dump(mode="json") for rule in claims.role_rules],
    }
    return {"module": auth.module, "jwk_config": {"url": str(jwk.url), "jwt_configuration": jwt_configuration}}


def _authorization(config: AppConfig) -> dict[str, Any] | None:
    rules = config.authorization.access_rules
    return {"access_rules": [rule.model_dump(mode="json") for rule in rules]} if rules else None


def _conversation_store(config: AppConfig) -> dict[str, Any]:
    """Where conversations are kept, in lightspeed-stack's shape; the password masked."""
    url = config.service.database.url
    if url is None:
        return {"type": "sqlite", "sqlite": {"db_path": str(config.service.state_dir / DATABASE_FILE)}}
    [host] = url.hosts()
    postgres = {
        "host": host.get("host"),
        "port": host.get("port"),
        "db": (url.path or "/").lstrip("/"),
        "user": host.get("username"),
        "password": MASK,
    }
    return {"type": "postgres", "postgres": postgres}


async def configuration(request: web.Request) -> web.Response:
    """GET /v1/config (admin): the configuration as lightspeed-stack's clients read it."""
    app = request.app
    return web.json_response({"configuration": stack_configuration(app[CONFIG])})
