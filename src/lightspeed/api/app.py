"""The application factory. Every resource is a cleanup_ctx pair, opened off the event loop."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from lightspeed import preflight
from lightspeed.answers.answering import Answerer
from lightspeed.answers.index_cache import CACHE_DIR, IndexCache
from lightspeed.answers.providers.base import AnswerProvider
from lightspeed.answers.providers.local import LocalProvider
from lightspeed.answers.providers.openai import OpenAIProvider
from lightspeed.answers.redaction import Redactor
from lightspeed.answers.retrieval import Document, DocumentIndex, read_documents
from lightspeed.api.keys import (
    ANSWERS,
    AUTH,
    CONFIG,
    CONVERSATIONS,
    HASHER,
    METRICS,
    MODELS,
    OPENAPI,
    RECORDS,
    REDACTOR,
    SENDER,
    SETTINGS,
    STORE,
    STORE_HEALTH,
    STREAMS,
    TELEMETRY,
)
from lightspeed.api.openapi import build_openapi
from lightspeed.api.routes import ROUTES, add_routes
from lightspeed.api.streams import RunningStreams
from lightspeed.identity import UserHasher
from lightspeed.metrics import Metrics
from lightspeed.models.catalog import ModelCatalog, ModelManager, startup_embedder
from lightspeed.models.embedding import DEFAULT_MODEL_NAME, Embedder, load_embedder
from lightspeed.records.writer import RecordWriter, prepare_storage
from lightspeed.store import open_store, shared
from lightspeed.store.queries import StateStore
from lightspeed.store.settings import RuntimeSettings
from lightspeed.telemetry.wiring import open_telemetry
from lightspeed_common.checks import run_checks
from lightspeed_common.config import AppConfig
from lightspeed_common.config_base import effective_allowed_hosts
from lightspeed_common.errors import ConfigError
from lightspeed_common.health import HealthProbe
from lightspeed_common.http.keys import ALLOWED_HOSTS, BODY_PACE, HTTP_METRICS, REQUEST_IDS
from lightspeed_common.http.middleware import observe
from lightspeed_common.http.pace import BodyPace
from lightspeed_common.identity import RequestIds, installation_id
from lightspeed_common.records import FEEDBACK, RECORD_KINDS, TRANSCRIPT

log = structlog.get_logger(__name__)
DEGRADED_CHECK_SECONDS = 2.0  # how long start-up asks the provider whether it is ready (ls_started_in_degraded_mode)


@dataclass(frozen=True)
class OpenedState:
    hasher: UserHasher
    store: StateStore


def open_state(config: AppConfig) -> OpenedState:
    """Prepare the storage and state directories and open the state store (blocking).

    Raises StorageError for a directory that cannot be created or written, or a store that cannot be opened.
    """
    prepare_storage("state", config.service.state_dir)
    for kind in RECORD_KINDS:
        if (path := kind.storage(config)) is not None:
            prepare_storage(kind.storage_key, path)
    state_dir = config.service.state_dir
    installation_id(state_dir)  # made here, read by the collector (which may not write this directory)
    return OpenedState(UserHasher.from_state_dir(state_dir), open_store(config))


UNSHARED_PATHS = frozenset({"/liveness", "/readiness", "/metrics"})


@web.middleware
async def fresh_shared_state(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Other processes write the store too (several workers, PostgreSQL): read the runtime settings
    again before a request uses them, and the telemetry queue before telemetry shows it."""
    if request.path not in UNSHARED_PATHS and SETTINGS in request.app:
        await request.app[SETTINGS].refresh()
        if request.path.startswith(("/v1/telemetry", "/settings")) and TELEMETRY in request.app:
            await request.app[TELEMETRY].queue.refresh()
    return await handler(request)


def _documents(config: AppConfig) -> list[Document]:
    return read_documents(preflight.documents_dir(config))


def _index(config: AppConfig, model: Embedder, documents: list[Document]) -> DocumentIndex:
    """The documents indexed with `model`, the vectors from the index cache when it has them (blocking)."""
    cache = IndexCache(config.service.state_dir / CACHE_DIR)
    return DocumentIndex(model, documents, config.answers.local.passage_chars, cache)


def models_dir(config: AppConfig) -> Path:
    return config.embedding.models_dir or config.service.state_dir / "models"


async def _build_provider(config: AppConfig, index: DocumentIndex) -> AnswerProvider:
    if config.answers.provider == "local":
        return LocalProvider(len(index.passages), index.embedder.token_counter())
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
    interval = app[CONFIG].service.database.health_check_interval_seconds
    async with HealthProbe("database", app[STORE].check, interval).running() as probe:
        app[STORE_HEALTH] = probe
        yield


CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def _state(config: AppConfig) -> CleanupContext:
    """The start-up checks, the directories, the persisted state, the record writer."""

    async def state(app: web.Application) -> AsyncIterator[None]:
        # The checks `check-config` runs, first: a start that fails, fails as check-config said it would.
        if problems := await asyncio.to_thread(run_checks, preflight.server_checks(config)):
            raise problems[0]
        opened = await asyncio.to_thread(open_state, config)
        app[AUTH] = await asyncio.to_thread(preflight.authenticator, config)
        app[HASHER] = opened.hasher
        app[STORE] = app[CONVERSATIONS] = opened.store
        try:
            app[SETTINGS] = await RuntimeSettings.load(
                opened.store, config.service.state_dir, config.user_data_collection.feedback_enabled, shared(config)
            )
        except BaseException:
            await opened.store.close()
            raise
        writer = RecordWriter(
            FEEDBACK.storage(config),
            TRANSCRIPT.storage(config),
            config.service.record_writer_threads,
            on_result=app[METRICS].record_result,
        )
        app[RECORDS] = writer
        yield
        await writer.close()
        await opened.store.close()

    return state


def _telemetry(config: AppConfig, reset_client_id: bool) -> CleanupContext:
    """The opt-in telemetry service and its sender (started last, by _start_background)."""

    async def telemetry(app: web.Application) -> AsyncIterator[None]:
        opened = await open_telemetry(config, app[STORE], app[SETTINGS], app[METRICS], reset_client_id)
        app[TELEMETRY], app[SENDER] = opened.service, opened.sender
        yield
        await opened.close()

    return telemetry


def _answers(config: AppConfig, embedder: Embedder | None, provider: AnswerProvider | None) -> CleanupContext:
    """The embedding model, the passage index over the documents, the answer provider, the model manager."""
    local = config.answers.local
    default_name = local.embedding_model_path.name if local.embedding_model_path else DEFAULT_MODEL_NAME

    def load_default() -> Embedder:
        return embedder if embedder is not None else load_embedder(local.embedding_model_path, default_name)

    async def answers(app: web.Application) -> AsyncIterator[None]:
        catalog = await asyncio.to_thread(ModelCatalog.load, config.service.state_dir)
        documents = await asyncio.to_thread(_documents, config)
        model = await asyncio.to_thread(startup_embedder, catalog, models_dir(config), load_default)
        index = await asyncio.to_thread(_index, config, model, documents)
        answerer = provider or await _build_provider(config, index)
        app[ANSWERS] = Answerer(index, answerer, config.answers)
        for choice in app[ANSWERS].available():
            app[METRICS].offer_model(choice.provider, choice.model)
        try:
            degraded = await asyncio.wait_for(answerer.unready_reason(), DEGRADED_CHECK_SECONDS) is not None
        except TimeoutError:
            degraded = True
        app[METRICS].ls.started_in_degraded_mode.set(1 if degraded else 0)
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
            "answers_ready", provider=answerer.name, passages=len(index.passages), embedding_model=index.embedder.name
        )
        yield
        await manager.close()
        await answerer.close()
        app[ANSWERS].close()

    return answers


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
    middlewares = [observe, fresh_shared_state] if shared(config) else [observe]
    app = web.Application(middlewares=middlewares, client_max_size=config.service.max_request_bytes)
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[HTTP_METRICS] = app[METRICS]
    app[REDACTOR] = Redactor.from_config(config.redaction)
    app[OPENAPI] = build_openapi(ROUTES)
    app[STREAMS] = RunningStreams()
    app[REQUEST_IDS] = RequestIds()
    app[BODY_PACE] = BodyPace(
        config.service.timeouts.body_timeout_seconds, config.service.timeouts.min_body_bytes_per_second
    )
    app[ALLOWED_HOSTS] = effective_allowed_hosts(config.service.host, config.service.allowed_hosts)
    app.cleanup_ctx.extend(
        [
            _redactor_worker,
            _state(config),
            _telemetry(config, reset_telemetry_client_id),
            _answers(config, embedder, provider),
            _freeze_startup_heap,
            _start_background,
        ]
    )
    add_routes(app)
    return app
