"""The application factory. Every resource is a cleanup_ctx pair, opened off the event loop."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web

from lightspeed import preflight
from lightspeed.answering import Answerer
from lightspeed.config import AppConfig, effective_allowed_hosts
from lightspeed.embedding import DEFAULT_MODEL_NAME, Embedder, load_embedder
from lightspeed.errors import ConfigError
from lightspeed.identity import RequestIds, UserHasher, UuidSource, installation_id
from lightspeed.keys import (
    ALLOWED_HOSTS,
    ANSWERS,
    AUTH,
    BODY_TIMEOUT,
    CONFIG,
    CONVERSATIONS,
    HASHER,
    HTTP_METRICS,
    METRICS,
    MODELS,
    OPENAPI,
    RECORDS,
    REDACTOR,
    REQUEST_IDS,
    SENDER,
    SETTINGS,
    TELEMETRY,
    UUIDS,
)
from lightspeed.metrics import Metrics
from lightspeed.middleware import observe
from lightspeed.model_catalog import ModelCatalog, ModelManager, startup_embedder
from lightspeed.openapi import build_openapi
from lightspeed.providers.base import AnswerProvider
from lightspeed.providers.local import LocalProvider
from lightspeed.providers.openai import OpenAIProvider
from lightspeed.records import RecordWriter, prepare_storage
from lightspeed.redaction import Redactor
from lightspeed.retrieval import Passage, PassageIndex, read_documents
from lightspeed.routes import ROUTES, add_routes
from lightspeed.state import ConversationStore, RuntimeSettings
from lightspeed.telemetry.wiring import open_telemetry

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class OpenedState:
    hasher: UserHasher
    conversations: ConversationStore
    settings: RuntimeSettings


def open_state(config: AppConfig) -> OpenedState:
    """Prepare the storage and state directories and load the persisted state (blocking).

    Raises StorageError for a directory that cannot be created or written.
    """
    udc = config.user_data_collection
    prepare_storage("state", config.service.state_dir)
    for what, path in (
        ("feedback_storage", udc.feedback_storage),
        ("transcripts_storage", udc.transcripts_storage),
    ):
        if path is not None:
            prepare_storage(what, path)
    state_dir = config.service.state_dir
    installation_id(state_dir)  # made here, read by the collector (which may not write this directory)
    return OpenedState(
        UserHasher.from_state_dir(state_dir),
        ConversationStore.load(state_dir),
        RuntimeSettings.load(state_dir, udc.feedback_enabled),
    )


def _documents(config: AppConfig) -> list[Passage]:
    return read_documents(preflight.documents_dir(config), config.answers.local.passage_chars)


def models_dir(config: AppConfig) -> Path:
    return config.embedding.models_dir or config.service.state_dir / "models"


async def _build_provider(config: AppConfig, index: PassageIndex) -> AnswerProvider:
    if config.answers.provider == "local":
        return LocalProvider(len(index.passages))
    cfg = config.answers.openai
    if cfg.base_url is None or cfg.model is None:  # the config validator prevents this
        raise ConfigError("answers.openai", ["base_url and model are required"])
    key = await asyncio.to_thread(preflight.openai_key, config)
    return OpenAIProvider(str(cfg.base_url), cfg.model, key, cfg.timeout_seconds, cfg.max_tokens)


async def _freeze_startup_heap(app: web.Application) -> AsyncIterator[None]:
    """Move everything start-up made (torch, the model, the index) out of the collector's reach.

    Otherwise every full collection walks millions of long-lived objects and
    stalls the event loop for tens of milliseconds under load.
    """
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


async def _redactor_worker(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[REDACTOR].close()


async def _start_background(app: web.Application) -> AsyncIterator[None]:
    """Background work begins only once every resource is open: nothing runs during start-up."""
    app[SENDER].start()
    yield


def create_app(
    config: AppConfig,
    *,
    embedder: Embedder | None = None,
    provider: AnswerProvider | None = None,
    reset_telemetry_client_id: bool = False,
) -> web.Application:
    """The lightspeed application for `config`.

    `embedder` replaces loading the configured default model (tests share one
    loaded model); a registered model made active is still loaded.
    `provider` replaces the configured answer provider.
    `reset_telemetry_client_id` is `serve --reset-telemetry-client-id`. Start-up fails
    with StorageError or ConfigError when a directory or a referenced file is
    not usable, before the first request is served.
    """
    app = web.Application(middlewares=[observe], client_max_size=config.service.max_request_bytes)
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[HTTP_METRICS] = app[METRICS]
    app[REDACTOR] = Redactor.from_config(config.redaction)
    app[OPENAPI] = build_openapi(ROUTES)
    app[REQUEST_IDS] = RequestIds()
    app[BODY_TIMEOUT] = config.service.timeouts.body_timeout_seconds
    app[ALLOWED_HOSTS] = effective_allowed_hosts(config.service.host, config.service.allowed_hosts)
    app[UUIDS] = UuidSource()

    async def state_ctx(app: web.Application) -> AsyncIterator[None]:
        # The checks `check-config` runs, first: a start that fails, fails as check-config said it would.
        if problems := await asyncio.to_thread(preflight.run_checks, preflight.server_checks(config)):
            raise problems[0]
        opened = await asyncio.to_thread(open_state, config)
        app[AUTH] = await asyncio.to_thread(preflight.authenticator, config)
        app[HASHER] = opened.hasher
        app[CONVERSATIONS] = opened.conversations
        app[SETTINGS] = opened.settings
        udc = config.user_data_collection
        writer = RecordWriter(
            udc.feedback_storage,
            udc.transcripts_storage,
            config.service.record_writer_threads,
            on_result=app[METRICS].record_result,
        )
        app[RECORDS] = writer
        yield
        await writer.close()

    async def telemetry_ctx(app: web.Application) -> AsyncIterator[None]:
        telemetry = await open_telemetry(config, app[SETTINGS], app[METRICS], reset_telemetry_client_id)
        app[TELEMETRY], app[SENDER] = telemetry.service, telemetry.sender
        yield
        await telemetry.close()

    async def answers_ctx(app: web.Application) -> AsyncIterator[None]:
        local = config.answers.local
        default_name = local.embedding_model_path.name if local.embedding_model_path else DEFAULT_MODEL_NAME

        def load_default() -> Embedder:
            return embedder if embedder is not None else load_embedder(local.embedding_model_path, default_name)

        catalog = await asyncio.to_thread(ModelCatalog.load, config.service.state_dir)
        passages = await asyncio.to_thread(_documents, config)
        model = await asyncio.to_thread(startup_embedder, catalog, models_dir(config), load_default)
        index = await asyncio.to_thread(PassageIndex.build, model, passages)
        answerer = provider or await _build_provider(config, index)
        app[ANSWERS] = Answerer(index, answerer, local)
        manager = ModelManager(
            catalog,
            app[ANSWERS],
            app[TELEMETRY],
            models_dir=models_dir(config),
            default_name=default_name,
            load_default=load_default,
        )
        app[MODELS] = manager
        log.info(
            "answers_ready",
            provider=answerer.name,
            passages=len(index.passages),
            embedding_model=index.embedder.name,
        )
        yield
        await manager.close()
        await answerer.close()

    app.cleanup_ctx.extend(
        [_redactor_worker, state_ctx, telemetry_ctx, answers_ctx, _freeze_startup_heap, _start_background]
    )
    add_routes(app)
    return app
