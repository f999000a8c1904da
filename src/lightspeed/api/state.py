"""The server's state as its handlers see it, and the one way it is prepared.

Both HTTP daemons keep their state the same way (docs/architecture.md, "App
state"): what `create_app` knows before start-up is a typed `web.AppKey` each
(`CONFIG`, `METRICS`, `OPENAPI`, `STREAMS` here, and `USER` on each request; the shared middleware's keys
in `lightspeed_common.http.keys`), and everything start-up opens is one typed,
frozen object under one key (`SERVER` here, `INGEST` in the ingest), built
once every part of it is open. A handler reads `request.app[SERVER].turns`;
nothing is looked up before it exists.

`open_state` is the state's one preparation: the API server runs it at
start-up, and the main process of several workers runs it once before they
start (`__main__.prepare_shared_state`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lightspeed.access import User
from lightspeed.api.streams import RunningStreams
from lightspeed.identity import UserHasher
from lightspeed.metrics import Metrics
from lightspeed.privacy.erasure import Eraser
from lightspeed.records.writer import prepare_storage
from lightspeed.store import open_store, shared
from lightspeed.store.queries import StateStore
from lightspeed.store.settings import RuntimeSettings
from lightspeed_common.config import AppConfig
from lightspeed_common.identity import installation_id
from lightspeed_common.records import RECORD_KINDS

if TYPE_CHECKING:  # the main process of several workers prepares the state without the answers stack
    from lightspeed.answers.answering import Answerer
    from lightspeed.auth import Authenticator
    from lightspeed.models.catalog import ModelManager
    from lightspeed.records.feedback import FeedbackDesk
    from lightspeed.telemetry.sender import TelemetrySender
    from lightspeed.telemetry.service import TelemetryService
    from lightspeed.turns import Turns
    from lightspeed_common.health import HealthProbe

CONFIG = web.AppKey("config", AppConfig)
METRICS = web.AppKey("metrics", Metrics)
OPENAPI = web.AppKey("openapi", dict[str, Any])
STREAMS = web.AppKey("streams", RunningStreams)
# Who is asking: set by the route's guard (routes.py) before the handler runs.
USER = web.RequestKey("user", User)


@dataclass(frozen=True)
class Server:
    """What start-up opened, for the handlers."""

    auth: Authenticator
    hasher: UserHasher
    store: StateStore  # conversations, the runtime settings' rows, the telemetry queue
    health: HealthProbe  # the store's, probed in the background for /readiness
    settings: RuntimeSettings
    telemetry: TelemetryService
    sender: TelemetrySender
    answers: Answerer
    models: ModelManager
    turns: Turns
    feedback: FeedbackDesk
    eraser: Eraser


SERVER = web.AppKey("server", Server)


@dataclass(frozen=True)
class OpenedState:
    hasher: UserHasher
    store: StateStore
    settings: RuntimeSettings
    eraser: Eraser


async def open_state(config: AppConfig) -> OpenedState:
    """The storage and state directories made and proven writable, the installation id and the user
    hasher's key made, the store opened with its schema current, files from older releases imported, and
    erasures a stop interrupted finished (lightspeed.privacy.erasure).

    Raises StorageError for a directory that cannot be created or written, or a store that cannot be opened.
    """
    state_dir = config.service.state_dir
    await asyncio.to_thread(prepare_storage, "state", state_dir)
    for kind in RECORD_KINDS:
        if (path := kind.storage(config)) is not None:
            await asyncio.to_thread(prepare_storage, kind.storage_key, path)
    await asyncio.to_thread(installation_id, state_dir)  # made here, read by the collector
    hasher = await asyncio.to_thread(UserHasher.from_state_dir, state_dir)
    store = await asyncio.to_thread(open_store, config)
    try:
        feedback_default = config.user_data_collection.feedback_enabled
        settings = await RuntimeSettings.load(store, state_dir, feedback_default, shared(config))
        eraser = Eraser(config, store, hasher)
        await eraser.replay()
    except BaseException:
        await store.close()
        raise
    return OpenedState(hasher, store, settings, eraser)
