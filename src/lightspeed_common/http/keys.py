"""The application keys the shared middleware reads; every aiohttp daemon sets them in its app factory."""

from __future__ import annotations

from aiohttp import web

from lightspeed_common.http.metrics import HttpMetrics
from lightspeed_common.http.pace import BodyPace
from lightspeed_common.identity import RequestIds

# Request counts and latency; the server's Metrics is a subclass, the same object as its METRICS.
HTTP_METRICS = web.AppKey("http_metrics", HttpMetrics)
REQUEST_ID = web.RequestKey("request_id", str)
REQUEST_IDS = web.AppKey("request_ids", RequestIds)
# How a request body must keep arriving (both daemons' `timeouts`: body_timeout_seconds, min_body_bytes_per_second).
BODY_PACE = web.AppKey("body_pace", BodyPace)
# The Host names this daemon answers (config.effective_allowed_hosts); "*" in it: any.
ALLOWED_HOSTS = web.AppKey("allowed_hosts", frozenset[str])
