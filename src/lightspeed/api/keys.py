"""Typed application state keys: how the server's handlers reach the resources create_app made.

The keys the shared middleware reads are `lightspeed_common.http.keys`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lightspeed.answers.answering import Answerer
from lightspeed.answers.redaction import Redactor
from lightspeed.api.streams import RunningStreams
from lightspeed.auth import Authenticator
from lightspeed.identity import UserHasher
from lightspeed.metrics import Metrics
from lightspeed.models.catalog import ModelManager
from lightspeed.records.writer import RecordWriter
from lightspeed.store.conversations import ConversationStore
from lightspeed.store.queries import StateStore
from lightspeed.store.settings import RuntimeSettings
from lightspeed.telemetry.sender import TelemetrySender
from lightspeed.telemetry.service import TelemetryService
from lightspeed_common.config import AppConfig
from lightspeed_common.health import HealthProbe

CONFIG = web.AppKey("config", AppConfig)
METRICS = web.AppKey("metrics", Metrics)
AUTH = web.AppKey("auth", Authenticator)
REDACTOR = web.AppKey("redactor", Redactor)
RECORDS = web.AppKey("records", RecordWriter)
HASHER = web.AppKey("hasher", UserHasher)
CONVERSATIONS = web.AppKey("conversations", ConversationStore)
# The store's health, probed in the background for /readiness.
STORE_HEALTH = web.AppKey("store_health", HealthProbe)
STORE = web.AppKey("store", StateStore)  # the same object as CONVERSATIONS; settings and queue live there too
SETTINGS = web.AppKey("settings", RuntimeSettings)
TELEMETRY = web.AppKey("telemetry", TelemetryService)
SENDER = web.AppKey("telemetry_sender", TelemetrySender)
MODELS = web.AppKey("embedding_models", ModelManager)

OPENAPI = web.AppKey("openapi", dict[str, Any])
ANSWERS = web.AppKey("answers", Answerer)
STREAMS = web.AppKey("streams", RunningStreams)
