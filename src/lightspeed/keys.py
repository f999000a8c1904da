"""Typed application state keys: how handlers reach the resources create_app made."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lightspeed.answering import Answerer
from lightspeed.auth import Authenticator
from lightspeed.config import AppConfig
from lightspeed.identity import RequestIds, UserHasher, UuidSource
from lightspeed.metrics import HttpMetrics, Metrics
from lightspeed.model_catalog import ModelManager
from lightspeed.records import RecordWriter
from lightspeed.redaction import Redactor
from lightspeed.state import ConversationStore, RuntimeSettings
from lightspeed.telemetry.sender import TelemetrySender
from lightspeed.telemetry.service import TelemetryService

CONFIG = web.AppKey("config", AppConfig)
METRICS = web.AppKey("metrics", Metrics)
# The same object as METRICS in lightspeed; what the shared middleware needs from any app.
HTTP_METRICS = web.AppKey("http_metrics", HttpMetrics)
AUTH = web.AppKey("auth", Authenticator)
REDACTOR = web.AppKey("redactor", Redactor)
RECORDS = web.AppKey("records", RecordWriter)
HASHER = web.AppKey("hasher", UserHasher)
CONVERSATIONS = web.AppKey("conversations", ConversationStore)
SETTINGS = web.AppKey("settings", RuntimeSettings)
TELEMETRY = web.AppKey("telemetry", TelemetryService)
SENDER = web.AppKey("telemetry_sender", TelemetrySender)
MODELS = web.AppKey("embedding_models", ModelManager)

OPENAPI = web.AppKey("openapi", dict[str, Any])
ANSWERS = web.AppKey("answers", Answerer)
REQUEST_ID = web.RequestKey("request_id", str)
REQUEST_IDS = web.AppKey("request_ids", RequestIds)
# The longest pause allowed while a request body is read (both daemons' `timeouts.body_timeout_seconds`).
BODY_TIMEOUT = web.AppKey("body_timeout", float)
# The Host names this daemon answers (config.effective_allowed_hosts); "*" in it: any.
ALLOWED_HOSTS = web.AppKey("allowed_hosts", frozenset[str])
UUIDS = web.AppKey("uuids", UuidSource)
