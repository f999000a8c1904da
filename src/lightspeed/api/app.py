"""The application factory: create_app, and the start-up that opens the server's state in order.

Start-up is one cleanup context (`_open`, within `create_app`): each part opens off the event loop,
in the order the parts need each other, on one AsyncExitStack, so a failure
part-way closes what was opened, in reverse, and a clean stop does the same.
The handlers see the result as one typed object, `app[SERVER]` (api/state.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import AsyncIterator, Callable
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
from lightspeed.answers.retrieval import Document, DocumentIndex, read_documents
from lightspeed.api.openapi import build_openapi
from lightspeed.api.routes import ROUTES, add_routes
from lightspeed.api.starting import StartupProgress
from lightspeed.api.state import CONFIG, METRICS, OPENAPI, SERVER, STREAMS, OpenedState, Server, open_state
from lightspeed.api.streams import RunningStreams
from lightspeed.metrics import Metrics
from lightspeed.models.catalog import ModelCatalog, ModelManager, startup_embedder
from lightspeed.models.embedding import DEFAULT_MODEL_NAME, Embedder, load_embedder
from lightspeed.privacy.retention import Retention
from lightspeed.records.feedback import FeedbackDesk
from lightspeed.records.redaction import Redactor
from lightspeed.records.writer import RecordWriter
from lightspeed.store import shared
from lightspeed.telemetry.sender import TelemetrySender
from lightspeed.telemetry.service import TelemetryService
from lightspeed.telemetry.wiring import open_telemetry
from lightspeed.turns import Turns
from lightspeed_common import tracing
from lightspeed_common.checks import run_checks
from lightspeed_common.config import AppConfig
from lightspeed_common.config_base import effective_allowed_hosts
from lightspeed_common.errors import ConfigError
from lightspeed_common.health import HealthProbe
from lightspeed_common.http.keys import ALLOWED_HOSTS, BODY_PACE, HTTP_METRICS, REQUEST_IDS
from lightspeed_common.http.middleware import observed_app
from lightspeed_common.http.pace import BodyPace
from lightspeed_common.identity import RequestIds
from lightspeed_common.records import FEEDBACK, TRANSCRIPT

log = structlog.get_logger(__name__)
DEGRADED_CHECK_SECONDS = 2.0  # how long start-up asks the provider whether it is ready (ls_started_in_degraded_mode)


UNSHARED_PATHS = frozenset({"/liveness", "/readiness", "/metrics"})


@web.middleware
async def fresh_shared_state(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Other processes write the store too (several workers, PostgreSQL): read the runtime settings
    again before a request uses them, and the telemetry queue before telemetry shows it."""
    if request.path not in UNSHARED_PATHS and SERVER in request.app:
        server = request.app[SERVER]
        await server.settings.refresh()
        if request.path.startswith(("/v1/telemetry", "/settings")):
            await server.telemetry.queue.refresh()
    return await handler(request)


def _documents(config: AppConfig) -> list[Document]:
    return read_documents(preflight.documents_dir(config))


def _index(config: AppConfig, model: Embedder, documents: list[Document], progress: StartupProgress) -> DocumentIndex:
    """The documents indexed with `model`, the vectors from the index cache when it has them (blocking)."""
    cache = IndexCache(config.service.state_dir / CACHE_DIR, config.logging.progress_interval_seconds)
    return DocumentIndex(model, documents, config.answers.local.passage_chars, cache, progress.index)


def models_dir(config: AppConfig) -> Path:
    return config.embedding.models_dir or config.service.state_dir / "models"


async def _build_provider(config: AppConfig, index: DocumentIndex) -> AnswerProvider:
    if config.answers.provider == "local":
        return LocalProvider(len(index.passages), index.embedder.token_counter())
    cfg = config.answers.openai
    if cfg.base_url is None or cfg.model is None:  # the config validator prevents this
        raise ConfigError("answers.openai", ["base_url and model are required"])
    key = await asyncio.to_thread(preflight.openai_key, config)
    outbound = await asyncio.to_thread(preflight.openai_outbound, config)
    return OpenAIProvider(str(cfg.base_url), cfg.model, key, cfg.timeout_seconds, cfg.max_tokens, outbound=outbound)


_COLLECTED_ONCE = threading.Event()


def _freeze_startup_heap() -> None:
    """Move everything start-up made (torch, the model, the index) out of the collector's reach.

    Otherwise every full collection walks millions of long-lived objects and
    stalls the event loop for tens of milliseconds under load. For good: the
    server is its process's one application, and what it made at start-up
    lives as long as the process. Before freezing, the first start in a process
    collects the garbage of every generation; a later one (the tests start
    hundreds of applications in a process) only the young ones, as a full
    collection with torch loaded takes 0.4 s, and freezing itself costs nothing.
    """
    if _COLLECTED_ONCE.is_set():
        gc.collect(1)
    else:
        gc.collect()
        _COLLECTED_ONCE.set()
    gc.freeze()


def _default_model(config: AppConfig, embedder: Embedder | None) -> tuple[str, Callable[[], Embedder]]:
    """The default embedding model's name, and how to load it (`embedder` when a test gives one)."""
    local = config.answers.local
    name = local.embedding_model_path.name if local.embedding_model_path else DEFAULT_MODEL_NAME

    def load() -> Embedder:
        return embedder if embedder is not None else load_embedder(local.embedding_model_path, name)

    return name, load


@contextlib.asynccontextmanager
async def _answers(
    config: AppConfig,
    metrics: Metrics,
    embedder: Embedder | None,
    provider: AnswerProvider | None,
    progress: StartupProgress,
) -> AsyncIterator[tuple[Answerer, ModelCatalog]]:
    """The embedding model, the passage index over the documents, and the answer provider."""
    default_name, load_default = _default_model(config, embedder)
    catalog = await asyncio.to_thread(ModelCatalog.load, config.service.state_dir)
    progress.step = "documents"
    documents = await asyncio.to_thread(_documents, config)
    progress.step = f"embedding model {catalog.active or default_name}"
    model = await asyncio.to_thread(startup_embedder, catalog, models_dir(config), load_default)
    index = await asyncio.to_thread(_index, config, model, documents, progress)
    progress.step = "answer provider"
    answerer = provider or await _build_provider(config, index)
    answers = Answerer(index, answerer, config.answers)
    for choice in answers.available():
        metrics.offer_model(choice.provider, choice.model)
    try:
        degraded = await asyncio.wait_for(answerer.unready_reason(), DEGRADED_CHECK_SECONDS) is not None
    except TimeoutError:
        degraded = True
    metrics.ls.started_in_degraded_mode.set(1 if degraded else 0)
    log.info("answers_ready", provider=answerer.name, passages=len(index.passages), embedding_model=model.name)
    try:
        yield answers, catalog
    finally:
        await answerer.close()
        answers.close()


def _model_manager(
    config: AppConfig, catalog: ModelCatalog, answers: Answerer, telemetry: TelemetryService, embedder: Embedder | None
) -> ModelManager:
    default_name, load_default = _default_model(config, embedder)
    return ModelManager(
        catalog,
        answers,
        telemetry,
        models_dir=models_dir(config),
        default_name=default_name,
        load_default=load_default,
    )


def _user_data(
    config: AppConfig,
    state: OpenedState,
    answers: Answerer,
    redactor: Redactor,
    writer: RecordWriter,
    *,
    metrics: Metrics,
) -> tuple[Turns, FeedbackDesk]:
    """Where a user's words become conversations and records: turns, and feedback."""
    collection = config.user_data_collection
    turns = Turns(
        answers,
        state.store,
        state.hasher,
        redactor,
        writer,
        metrics=metrics,
        limits=config.answers,
        transcripts_enabled=collection.transcripts_enabled,
        erased=state.eraser.covers_record,
    )
    feedback = FeedbackDesk(
        state.settings,
        state.store,
        state.hasher,
        redactor,
        writer,
        storage_configured=collection.feedback_storage is not None,
    )
    return turns, feedback


def _record_writer(config: AppConfig, metrics: Metrics) -> RecordWriter:
    storage = FEEDBACK.storage(config), TRANSCRIPT.storage(config)
    return RecordWriter(*storage, config.service.record_writer_threads, metrics.record_result)


async def _background(
    stack: contextlib.AsyncExitStack, config: AppConfig, state: OpenedState, sender: TelemetrySender, metrics: Metrics
) -> HealthProbe:
    """The background work: the telemetry sender, the retention passes, the store's health probe."""
    sender.start()
    retention = Retention(config, state.store, metrics.retention_removed)
    stack.push_async_callback(retention.stop)
    retention.start()
    probe = HealthProbe("database", state.store.check, config.service.database.health_check_interval_seconds)
    return await stack.enter_async_context(probe.running())


async def _open(
    stack: contextlib.AsyncExitStack,
    config: AppConfig,
    metrics: Metrics,
    *,
    embedder: Embedder | None,
    provider: AnswerProvider | None,
    reset_telemetry_client_id: bool,
    progress: StartupProgress,
) -> Server:
    """Start-up in order: the checks, the state, the record writer, telemetry, answers and the model
    manager; then background work (the sender, the store's health probe), once everything is open.
    Each part's closing goes on `stack`."""
    progress.step = "configuration checks"
    stack.push_async_callback((redactor := Redactor.from_config(config.redaction)).close)
    # The checks `check-config` runs, first: a start that fails, fails as check-config said it would.
    if problems := await asyncio.to_thread(run_checks, preflight.server_checks(config)):
        raise problems[0]
    if tracing.start("lightspeed"):  # OTEL_* asks for traces
        stack.push_async_callback(asyncio.to_thread, tracing.stop)  # the last spans are sent
    progress.step = "state store"
    stack.push_async_callback((state := await open_state(config)).store.close)
    stack.push_async_callback((auth := await asyncio.to_thread(preflight.authenticator, config)).close)
    stack.push_async_callback((writer := _record_writer(config, metrics)).close)
    telemetry = await open_telemetry(config, state.store, state.settings, metrics, reset_telemetry_client_id)
    stack.push_async_callback(telemetry.close)
    answers, catalog = await stack.enter_async_context(_answers(config, metrics, embedder, provider, progress))
    models = _model_manager(config, catalog, answers, telemetry.service, embedder)
    stack.push_async_callback(models.close)
    _freeze_startup_heap()
    # Background work begins only once every resource is open: nothing runs during start-up.
    health = await _background(stack, config, state, telemetry.sender, metrics)
    turns, feedback = _user_data(config, state, answers, redactor, writer, metrics=metrics)
    stack.push_async_callback(turns.settled)  # the transcripts handed off are written before the writer stops
    return Server(
        auth=auth,
        hasher=state.hasher,
        store=state.store,
        health=health,
        settings=state.settings,
        telemetry=telemetry.service,
        sender=telemetry.sender,
        answers=answers,
        models=models,
        turns=turns,
        feedback=feedback,
        eraser=state.eraser,
    )


def create_app(
    config: AppConfig,
    *,
    embedder: Embedder | None = None,
    provider: AnswerProvider | None = None,
    reset_telemetry_client_id: bool = False,
    progress: StartupProgress | None = None,
) -> web.Application:
    """The lightspeed application for `config`.

    `embedder` replaces loading the configured default model (tests share one
    loaded model); a registered model made active is still loaded.
    `provider` replaces the configured answer provider.
    `reset_telemetry_client_id` is `serve --reset-telemetry-client-id`. Start-up fails
    with StorageError or ConfigError when a directory or a referenced file is
    not usable, before the first request is served. `progress` is told each step of start-up
    (what `/readiness` says meanwhile when the server answers while starting).
    """
    progress = progress or StartupProgress()
    others = [fresh_shared_state] if shared(config) else []
    app = observed_app(*others, client_max_size=config.service.max_request_bytes)
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[HTTP_METRICS] = app[METRICS]
    app[OPENAPI] = build_openapi(ROUTES)
    app[STREAMS] = RunningStreams()
    app[REQUEST_IDS] = RequestIds()
    app[BODY_PACE] = BodyPace(
        config.service.timeouts.body_timeout_seconds, config.service.timeouts.min_body_bytes_per_second
    )
    app[ALLOWED_HOSTS] = effective_allowed_hosts(config.service.host, config.service.allowed_hosts)

    async def start(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            app[SERVER] = await _open(
                stack,
                config,
                app[METRICS],
                embedder=embedder,
                provider=provider,
                reset_telemetry_client_id=reset_telemetry_client_id,
                progress=progress,
            )
            yield

    app.cleanup_ctx.append(start)
    add_routes(app)
    return app
