"""lightspeed-ingest's application: uploads, the model registry, /admin, health and metrics.

`create_app(config)` builds it; start-up opens the state directory and the
database, removes what a crash left half-done (temporary files, and archives
whose transaction never committed: their senders got no 202 and send them
again), reads the keys, and starts the retention task.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import structlog
from aiohttp import web

from ingest import admin, registry, uploads
from ingest.archive_store import ArchiveStore, archive_store
from ingest.context import INGEST, Ingest, IngestMetrics, KeyRing, parse_keys
from ingest.sqlite_storage import SQLiteStorage
from ingest.storage import Database, StorageFailure
from lightspeed_common.atomic import ensure_dir
from lightspeed_common.checks import Check, run_checks, writable_directory
from lightspeed_common.config import AppConfig
from lightspeed_common.config_base import effective_allowed_hosts
from lightspeed_common.config_ingest import IngestConfig
from lightspeed_common.credentials import read_secret
from lightspeed_common.errors import ConfigError, StorageError
from lightspeed_common.http.keys import ALLOWED_HOSTS, BODY_TIMEOUT, HTTP_METRICS, REQUEST_IDS
from lightspeed_common.http.middleware import observe
from lightspeed_common.identity import RequestIds

log = structlog.get_logger("ingest")
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
    ]


def _open_storage(config: IngestConfig) -> tuple[SQLiteStorage, ArchiveStore]:
    state = config.state_dir
    archives = archive_store(config)
    try:
        ensure_dir(state)
        archives.open()
        storage = SQLiteStorage(state / "ingest.sqlite3")
    except (OSError, StorageFailure) as exc:
        raise StorageError("ingest state", state, str(exc)) from None
    return storage, archives


def recover(storage: SQLiteStorage, archives: ArchiveStore) -> int:
    """Remove unfinished receptions and archives no committed upload names; how many (blocking)."""
    return archives.recover(storage.known_archives())


async def enforce_retention(ingest: Ingest, now: datetime | None = None) -> dict[str, int]:
    """Delete archives and rows past their retention; archives first, so no row outlives its file."""
    moment = now or datetime.now(UTC)
    config = ingest.config
    uploads_before = moment - timedelta(days=config.uploads.retention_days)
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
        try:
            await enforce_retention(ingest)
        except Exception:
            log.exception("retention_failed")
        await asyncio.sleep(ingest.config.retention_check_interval_seconds)


async def liveness(request: web.Request) -> web.Response:
    return web.json_response({"alive": True})


async def readiness(request: web.Request) -> web.Response:
    return web.json_response({"ready": True, "reason": "database open"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[INGEST].metrics.render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


def _state(config: AppConfig, ingest_metrics: IngestMetrics) -> CleanupContext:
    """Start-up and shutdown of the ingest's state: checks, keys, storage, recovery, the retention task."""
    settings = config.ingest

    async def state(app: web.Application) -> AsyncIterator[None]:
        if problems := await asyncio.to_thread(run_checks, ingest_checks(config)):
            raise problems[0]
        upload_keys, telemetry_keys, admin_keys = await asyncio.to_thread(_keys, settings)
        storage, archives = await asyncio.to_thread(_open_storage, settings)
        db = Database(storage)
        removed = await db.run(recover, storage, archives)
        if removed:
            log.warning("ingest_recovered", removed_unfinished_files=removed)
        ingest = Ingest(settings, db, archives, upload_keys, telemetry_keys, admin_keys, ingest_metrics)
        app[INGEST] = ingest
        if not upload_keys.keys:
            log.warning(
                "ingest_no_upload_tokens", hint="every upload is refused until ingest.uploads.tokens_file is set"
            )
        retention = asyncio.create_task(_retention_loop(ingest))
        log.info(
            "ingest_ready",
            state_dir=str(settings.state_dir),
            allowed_services=list(settings.uploads.allowed_services),
            telemetry_auth=bool(telemetry_keys.keys),
            admin=bool(admin_keys.keys),
        )
        yield
        retention.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await retention
        await db.close()

    return state


def create_app(config: AppConfig) -> web.Application:
    settings = config.ingest
    app = web.Application(middlewares=[observe], client_max_size=64 * 1024)
    app[REQUEST_IDS] = RequestIds()
    app[BODY_TIMEOUT] = settings.timeouts.body_timeout_seconds
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
    app.router.add_get("/admin", admin.admin_page)
    app.router.add_get("/admin/{asset}", admin.admin_page)
    app.router.add_get("/liveness", liveness)
    app.router.add_get("/readiness", readiness)
    app.router.add_get("/metrics", metrics)
    return app
