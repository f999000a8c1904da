"""Opening and closing the telemetry parts for the server (its cleanup_ctx pair)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import structlog

from lightspeed.metrics import Metrics
from lightspeed.store import shared
from lightspeed.store.queries import StateStore
from lightspeed.store.settings import RuntimeSettings
from lightspeed.store.telemetry_queue import QueueBounds, TelemetryQueue
from lightspeed.telemetry.registry_client import RegistryClient, ssl_context
from lightspeed.telemetry.sender import TelemetrySender
from lightspeed.telemetry.service import TelemetryService
from lightspeed_common.config import AppConfig, TelemetryConfig
from lightspeed_common.credentials import read_secret
from lightspeed_common.errors import ConfigError

log = structlog.get_logger(__name__)


@dataclass
class OpenTelemetry:
    service: TelemetryService
    sender: TelemetrySender
    session: aiohttp.ClientSession | None

    async def close(self) -> None:
        """The bounded last send, then everything queued is on disk."""
        await self.sender.close()
        await self.service.queue.flush()
        if self.session is not None:
            await self.session.close()


def registry_token(config: TelemetryConfig) -> str | None:
    try:
        return read_secret(config.registry_token, config.registry_token_file, config.registry_token_credential)
    except OSError as exc:
        raise ConfigError("telemetry.registry_token_file", [f"cannot read it: {exc.strerror}"]) from exc


async def open_telemetry(
    config: AppConfig, store: StateStore, settings: RuntimeSettings, metrics: Metrics, reset: bool
) -> OpenTelemetry:
    """Load the queue and the consent state; nothing is sent or queued here."""
    cfg = config.telemetry
    bounds = QueueBounds(cfg.queue_max_events, cfg.queue_max_bytes, timedelta(days=cfg.event_max_age_days))
    queue = await TelemetryQueue.load(
        store, config.service.state_dir, bounds, metrics.telemetry_drop, shared=shared(config)
    )
    service = TelemetryService(cfg, settings, queue, os.environ)
    if reset:
        await service.reset_client_id()
    session = client = None
    if cfg.registry_url is not None:
        token = await asyncio.to_thread(registry_token, cfg)
        context = await asyncio.to_thread(ssl_context, cfg)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=2))
        client = RegistryClient(session, cfg, token)
    sender = TelemetrySender(cfg, service, settings, client, on_sent=metrics.telemetry_result, store=store)
    log.info(
        "telemetry_state",
        enabled=service.is_effective(),
        disabled_reason=service.disabled_reason(),
        queued=len(queue),
    )
    return OpenTelemetry(service, sender, session)
