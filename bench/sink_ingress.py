"""A sink for the collector and telemetry benchmarks: stores what it receives, checks little.

`python bench/sink_ingress.py --port 8090 --store DIR` accepts
`POST /api/ingress/v1/upload` (multipart part `file`), writes each archive to
`<store>/<request id>.tar.gz` and answers 202 with the request id, as
console.redhat.com's ingress does. It also plays the model registry:
`POST /api/v1/telemetry` validates each event against the client's own schema
and appends the accepted ones to `<store>/telemetry.jsonl`. It checks nothing
else, so the benchmarks measure the sender; `lightspeed-ingest` (src/ingest) is the
real receiving side, measured by ingest_bench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import structlog
from aiohttp import BodyPartReader, web

from lightspeed_common.atomic import append_lines, ensure_dir, write_atomic
from lightspeed_common.logs import configure_logging
from lightspeed_common.telemetry_schema import parse_event

log = structlog.get_logger("sink_ingress")
STORE = web.AppKey("store", Path)


async def upload(request: web.Request) -> web.Response:
    reader = await request.multipart()
    part = await reader.next()
    if not isinstance(part, BodyPartReader) or part.name not in ("file", "upload"):
        return web.json_response({"error": "expected a multipart part named file"}, status=400)
    data = await part.read()
    request_id = request.headers.get("x-rh-insights-request-id") or uuid.uuid4().hex
    path = request.app[STORE] / f"{request_id}.tar.gz"
    await asyncio.to_thread(write_atomic, path, bytes(data))
    log.info("upload_received", request_id=request_id, bytes=len(data), content_type=part.headers.get("Content-Type"))
    return web.json_response({"request_id": request_id, "upload": {"account_number": "dev"}}, status=202)


async def telemetry(request: web.Request) -> web.Response:
    """The registry contract: a JSON array in, `{accepted, rejected, results}` out."""
    try:
        events = json.loads(await request.read())
    except ValueError:
        return web.json_response({"error": "the body must be a JSON array of events"}, status=400)
    if not isinstance(events, list):
        return web.json_response({"error": "the body must be a JSON array of events"}, status=400)
    now = datetime.now(UTC)
    results = []
    accepted = []
    for index, event in enumerate(events):
        _, problems = parse_event(event, now, max_age_days=30)
        results.append({"index": index, "status": "rejected" if problems else "accepted", "errors": problems})
        if not problems:
            accepted.append(json.dumps(event, separators=(",", ":")))
    if accepted:
        await asyncio.to_thread(append_lines, request.app[STORE] / "telemetry.jsonl", accepted)
    log.info("telemetry_received", accepted=len(accepted), rejected=len(events) - len(accepted))
    return web.json_response({"accepted": len(accepted), "rejected": len(events) - len(accepted), "results": results})


async def liveness(request: web.Request) -> web.Response:
    return web.json_response({"alive": True})


def create_app(store: Path) -> web.Application:
    ensure_dir(store)
    app = web.Application(client_max_size=110 * 1024 * 1024)
    app[STORE] = store
    app.router.add_post("/api/ingress/v1/upload", upload)
    app.router.add_post("/api/v1/telemetry", telemetry)
    app.router.add_get("/liveness", liveness)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/sink_ingress.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--store", type=Path, default=Path("var/ingress"))
    args = parser.parse_args()
    writer = configure_logging(identifier="lightspeed-bench-sink")
    try:
        web.run_app(create_app(args.store), host=args.host, port=args.port, access_log=None, print=None)
    finally:
        writer.close()


if __name__ == "__main__":
    main()
