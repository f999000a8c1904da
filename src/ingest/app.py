"""lightspeed-ingest's application: uploads, the model registry, /admin, health and metrics.

`create_app(config)` builds it; start-up opens the state directory and the
database, removes what a crash left half-done (temporary files, and archives
whose transaction never committed: their senders got no 202 and send them
again), reads the keys, and starts the retention task.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import structlog
from aiohttp import web

from ingest import admin, feedback_api, insights, registry, uploads
from ingest.archive_store import ArchiveStore, archive_store
from ingest.context import INGEST, OPENAPI, Ingest, IngestMetrics, KeyRing, parse_keys
from ingest.erasure import erasure_task
from ingest.openapi import build_openapi
from ingest.sqlite_storage import SQLiteStorage
from ingest.storage import Database, Storage, StorageFailure, StorageUnavailable
from lightspeed_common import tracing
from lightspeed_common.atomic import ensure_dir
from lightspeed_common.checks import Check, run_checks, writable_directory
from lightspeed_common.config import AppConfig
from lightspeed_common.config_base import effective_allowed_hosts
from lightspeed_common.config_ingest import IngestConfig
from lightspeed_common.credentials import read_secret
from lightspeed_common.errors import ConfigError, ServiceUnavailable, StorageError
from lightspeed_common.health import HealthProbe
from lightspeed_common.http.keys import ALLOWED_HOSTS, BODY_PACE, HTTP_METRICS, REQUEST_IDS
from lightspeed_common.http.middleware import observed_app
from lightspeed_common.http.pace import BodyPace
from lightspeed_common.identity import RequestIds
from lightspeed_common.notify import Notifier
from lightspeed_common.sql import UNAVAILABLE_RETRY_AFTER, database_password

log = structlog.get_logger("ingest")
INSIGHTS_EXTEND_SECONDS = 30  # how far each notice moves systemd's start timeout while the counts are built
CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def _keys(config: IngestConfig) -> tuple[KeyRing, KeyRing, KeyRing]:
    """Upload tokens, telemetry keys and the admin key, from the config, files or credentials (blocking)."""
    uploads_cfg, telemetry_cfg = config.uploads, config.telemetry
    try:
        upload_keys = [t.get_secret_value() for t in uploads_cfg.tokens]
        upload_keys += parse_keys(read_secret(None, uploads_cfg.tokens_file, uploads_cfg.tokens_credential))
        telemetry_keys = [k.get_secret_value() for k in telemetry_cfg.api_keys]
        telemetry_keys += parse_keys(read_secret(None, telemetry_cfg.api_keys_file, telemetry_cfg.api_keys_credential))
        admin_key = read_secret(config.admin_key, config.admin_key_file, config.admin_key_credential)
    except OSError as exc:
        raise ConfigError("ingest", [f"cannot read a key file {exc.filename}: {exc.strerror}"]) from None
    if telemetry_cfg.require_api_key and not telemetry_keys:
        raise ConfigError(
            "ingest.telemetry.require_api_key",
            ["no telemetry key is configured: add one per line to the telemetry-keys credential (or api_keys_file)"],
        )
    return (
        KeyRing("upload", tuple(upload_keys)),
        KeyRing("telemetry", tuple(telemetry_keys)),
        KeyRing("admin", (admin_key,) if admin_key else ()),
    )


def tls_context(settings: IngestConfig) -> ssl.SSLContext | None:
    """The HTTPS context from `tls_cert_file` and `tls_key_file`, or None for plain HTTP (blocking)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("ingest.tls_cert_file", [f"cannot load the certificate or key: {exc}"]) from None
    return context


def ingest_checks(config: AppConfig) -> list[Check]:
    """What start-up checks on the machine; `lightspeed-ingest check-config` runs the same."""
    settings = config.ingest
    return [
        lambda: writable_directory("ingest state", settings.state_dir),
        lambda: _keys(settings),
        lambda: tls_context(settings),
        lambda: _database_password(settings),
    ]


def _database_password(config: IngestConfig) -> str | None:
    try:
        return database_password(config.database)
    except OSError as exc:
        raise ConfigError("ingest.database.password_file", [f"cannot read it: {exc.strerror}"]) from None


def _open_storage(config: IngestConfig) -> tuple[Storage, ArchiveStore]:
    """The database (PostgreSQL when `database.url` is set) and the archive store (blocking).
    StorageError names the database or directory that cannot be used."""
    state = config.state_dir
    archives = archive_store(config)
    try:
        ensure_dir(state)
        archives.open()
    except OSError as exc:
        raise StorageError("ingest archives", config.archive.directory or state, str(exc)) from None
    if config.database.url is not None:
        from ingest.postgres_storage import PostgresStorage  # noqa: PLC0415 - psycopg only when configured

        try:
            return PostgresStorage(config.database, _database_password(config)), archives
        except StorageFailure as exc:
            # The URL is safe to log: the config refuses one with a password.
            url, unreachable = str(config.database.url), isinstance(exc, StorageUnavailable)
            raise StorageError("ingest database", url, str(exc), temporary=unreachable) from None
    try:
        return SQLiteStorage(state / "ingest.sqlite3"), archives
    except StorageFailure as exc:
        raise StorageError("ingest state", state, str(exc)) from None


ORPHAN_GRACE_SECONDS = 15 * 60  # shared archives: how old an unindexed file must be before it counts as orphaned


def recover(storage: Storage, archives: ArchiveStore) -> int:
    """Remove unfinished receptions and archives no committed upload names; how many (blocking).
    With a shared database and directory, only files older than ORPHAN_GRACE_SECONDS: others may be
    another node's upload in progress."""
    return archives.recover(storage.known_archives, ORPHAN_GRACE_SECONDS if storage.shared else 0)


async def enforce_retention(ingest: Ingest, now: datetime | None = None) -> dict[str, int]:
    """Delete archives and rows past their retention; archives first, so no row outlives its file."""
    moment = now or datetime.now(UTC)
    config = ingest.config
    uploads_before = moment - timedelta(days=config.archive_retention_days)
    storage = ingest.db.storage
    expired = await ingest.db.run(storage.expired_archives, uploads_before)
    if expired:
        await asyncio.to_thread(ingest.archives.delete, expired)
    result = await ingest.db.run(
        storage.enforce_retention,
        uploads_before,
        moment - timedelta(days=config.telemetry.retention_days),
        moment - timedelta(days=config.telemetry.max_event_age_days + 1),
    )
    removed = {"uploads": result.uploads, "contributions": result.contributions, "seen_events": result.seen_events}
    for what, count in removed.items():
        ingest.metrics.retention_removed.labels(what).inc(count)
    if any(removed.values()):
        log.info("retention_enforced", **removed)
    return removed


async def _retention_loop(ingest: Ingest) -> None:
    while True:
        ingest.erasures_waiting.set()  # another node's, or one a failure left pending
        try:
            await enforce_retention(ingest)
            # Shared archives: a node that died mid-upload leaves files only another node removes.
            shared = ingest.db.storage.shared
            if shared and (removed := await ingest.db.run(recover, ingest.db.storage, ingest.archives)):
                log.warning("ingest_recovered", removed_unfinished_files=removed)
        except ServiceUnavailable as exc:
            log.warning("retention_deferred", reason=exc.cause)
        except Exception:
            log.exception("retention_failed")
        await asyncio.sleep(ingest.config.retention_check_interval_seconds)


async def liveness(request: web.Request) -> web.Response:
    return web.json_response({"alive": True})


async def readiness(request: web.Request) -> web.Response:
    """Ready while the database answers the background probe; 503 with the reason (and Retry-After) when
    it does not. Answers at once: the probe, not this request, waits on the database."""
    problem = request.app[INGEST].health.problem
    if problem:
        return web.json_response(
            {"ready": False, "reason": f"database: {problem}"},
            status=503,
            headers={"Retry-After": UNAVAILABLE_RETRY_AFTER},
        )
    return web.json_response({"ready": True, "reason": "database open"})


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


async def metrics(request: web.Request) -> web.Response:
    body = request.app[INGEST].metrics.render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


def _state(config: AppConfig, ingest_metrics: IngestMetrics) -> CleanupContext:
    """Start-up and shutdown of the ingest's state: one typed object (`Ingest`) under one key, as the
    server's (docs/architecture.md, "App state")."""

    async def state(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            app[INGEST] = await _open(stack, config, ingest_metrics)
            yield

    return state


async def _build_insights(db: Database) -> None:
    """At the first start after the upgrade that added the insights' counts, count what the index holds (about
    25 s a million records): systemd's start timeout is extended while it runs, so a large index is not
    killed and started again half-way, and the start logs what it does."""
    if await db.run(db.storage.insights_built):
        return
    log.info("insights_building", hint="counting the index once for the insights on /admin")
    notifier, started = Notifier.from_environment(), time.monotonic()
    building = asyncio.ensure_future(db.run(db.storage.rebuild_insights, True))
    try:
        while not building.done():
            notifier.send(f"EXTEND_TIMEOUT_USEC={INSIGHTS_EXTEND_SECONDS * 1_000_000}", "STATUS=counting for insights")
            await asyncio.wait({building}, timeout=INSIGHTS_EXTEND_SECONDS / 3)
    finally:
        notifier.close()
    if building.result():
        log.info("insights_built", seconds=round(time.monotonic() - started, 1))


async def _open(stack: contextlib.AsyncExitStack, config: AppConfig, ingest_metrics: IngestMetrics) -> Ingest:
    """Start-up in order: the checks, the keys, the storage and its recovery, the database's health probe,
    the retention task. Each part's closing goes on `stack`."""
    settings = config.ingest
    if problems := await asyncio.to_thread(run_checks, ingest_checks(config)):
        raise problems[0]
    if tracing.start("lightspeed-ingest"):  # OTEL_* asks for traces
        stack.push_async_callback(asyncio.to_thread, tracing.stop)  # the last spans are sent
    upload_keys, telemetry_keys, admin_keys = await asyncio.to_thread(_keys, settings)
    storage, archives = await asyncio.to_thread(_open_storage, settings)
    db = Database(storage)
    stack.push_async_callback(db.close)
    await _build_insights(db)
    removed = await db.run(recover, storage, archives)
    if removed:
        log.warning("ingest_recovered", removed_unfinished_files=removed)
    probe = HealthProbe(
        "database", functools.partial(db.call, storage.check), settings.database.health_check_interval_seconds
    )
    health = await stack.enter_async_context(probe.running())
    ingest = Ingest(settings, db, archives, upload_keys, telemetry_keys, admin_keys, ingest_metrics, health)
    if not upload_keys.keys:
        log.warning("ingest_no_upload_tokens", hint="every upload is refused until ingest.uploads.tokens_file is set")
    retention = asyncio.create_task(_retention_loop(ingest))
    stack.push_async_callback(_cancelled, retention)
    erasures = asyncio.create_task(erasure_task(ingest))
    stack.push_async_callback(_cancelled, erasures)
    ingest.erasures_waiting.set()  # those a stop interrupted, or another node received
    log.info(
        "ingest_ready",
        state_dir=str(settings.state_dir),
        database="postgresql" if storage.shared else "sqlite",
        allowed_services=list(settings.uploads.allowed_services),
        telemetry_auth=bool(telemetry_keys.keys),
        admin=bool(admin_keys.keys),
    )
    return ingest


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(config: AppConfig) -> web.Application:
    settings = config.ingest
    app = observed_app(client_max_size=64 * 1024)
    app[REQUEST_IDS] = RequestIds()
    app[OPENAPI] = build_openapi()
    app[BODY_PACE] = BodyPace(settings.timeouts.body_timeout_seconds, settings.timeouts.min_body_bytes_per_second)
    app[ALLOWED_HOSTS] = effective_allowed_hosts(settings.host, settings.allowed_hosts)
    ingest_metrics = IngestMetrics()
    app[HTTP_METRICS] = ingest_metrics
    app.cleanup_ctx.append(_state(config, ingest_metrics))
    app.router.add_post("/api/ingress/v1/upload", uploads.upload)
    app.router.add_post("/api/v1/telemetry", registry.telemetry)
    app.router.add_delete("/api/v1/telemetry/clients/{client_id}", registry.client_deletion)
    app.router.add_get("/api/admin/v1/models", admin.models)
    app.router.add_get("/api/admin/v1/uploads", admin.uploads)
    app.router.add_get("/api/admin/v1/deletions", admin.deletions)
    app.router.add_post("/api/admin/v1/deletions", admin.request_deletion)
    app.router.add_get("/api/admin/v1/erasures", admin.erasures)
    app.router.add_get("/api/admin/v1/feedback", feedback_api.feedback)
    app.router.add_get("/api/admin/v1/conversations/{conversation_id}/transcripts", feedback_api.transcripts)
    app.router.add_get("/api/admin/v1/insights", insights.overview)
    app.router.add_get("/api/admin/v1/insights/{chart}.svg", insights.chart)
    app.router.add_post("/api/admin/v1/erasures", admin.request_erasure)
    app.router.add_get("/admin", admin.admin_page)
    app.router.add_get("/admin/{asset}", admin.admin_page)
    app.router.add_get("/liveness", liveness)
    app.router.add_get("/readiness", readiness)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi_document)
    return app
