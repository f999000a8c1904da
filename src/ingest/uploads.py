"""`POST /api/ingress/v1/upload`: the insights ingress contract, as the collector speaks it.

The archive part is streamed to `incoming/` (never held in memory), fsynced,
checked (`archive.inspect_archive`), then moved to
`archives/YYYY/MM/DD/<request id>.tar.gz` inside the database transaction
that indexes its records; 202 is sent after the commit. A request id seen
before answers 202 again without storing anything, so a batch re-sent after a
lost reply is not counted twice; records already received in another upload
are counted as duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from ingest.archive import ArchiveRejected, Limits, inspect_archive
from ingest.context import INGEST, Ingest
from ingest.storage import DuplicateUpload, StorageFailure, StoredUpload, UploadInfo, iso
from lightspeed_common import tracing
from lightspeed_common.errors import (
    ApiError,
    BadRequest,
    InsufficientStorage,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from lightspeed_common.http.middleware import error_response
from lightspeed_common.http.pace import BodyDeadline, BodyPace
from lightspeed_common.records import ERASURE_FOLDER

log = structlog.get_logger("ingest.uploads")

# application/vnd.redhat.<service>.<category>[+tgz|+tar|...]
CONTENT_TYPE = re.compile(r"application/vnd\.redhat\.([a-z0-9][a-z0-9_-]*)\.([a-z0-9][a-z0-9_-]*)(\+[a-z0-9.-]+)?")
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
FILE_PARTS = ("file", "upload")
MAX_SMALL_PART = 64 * 1024
CHUNK = 1024 * 1024
BUSY_RETRY_AFTER = "5"  # seconds, when max_concurrent uploads are already in flight


def parse_content_type(value: str, allowed: tuple[str, ...]) -> tuple[str, str]:
    """(service, category) of an upload's content type; 415 unless the service is allowed."""
    match = CONTENT_TYPE.fullmatch(value.split(";", 1)[0].strip().lower())
    if match is None:
        raise UnsupportedMediaType(
            "Unsupported media type",
            f"the file part's content type must be application/vnd.redhat.<service>.<category>+tgz, not {value!r}",
        )
    service, category = match.group(1), match.group(2)
    if service not in allowed:
        raise UnsupportedMediaType("Unsupported media type", f"service {service!r} is not accepted by this ingest")
    return service, category


def _request_id(request: web.Request) -> str:
    supplied = request.headers.get("x-rh-insights-request-id")
    if supplied is None:
        return uuid.uuid4().hex
    if not REQUEST_ID.fullmatch(supplied):
        raise BadRequest("Invalid request id", "x-rh-insights-request-id must be 1-64 of A-Z a-z 0-9 _ -")
    return supplied


def _reply(stored: StoredUpload, service: str, category: str, size: int | None) -> web.Response:
    upload: dict[str, Any] = {
        "account_number": "",
        "org_id": "",
        "service": service,
        "category": category,
        "records": stored.records,
        "new_records": stored.new_records,
        "duplicate_records": stored.duplicate_records,
        "duplicate_request": stored.duplicate_request,
    }
    if size is not None:
        upload["size"] = size
    return web.json_response({"request_id": stored.request_id, "upload": upload}, status=202)


class _Spooled:
    """The archive part written to a temporary file, with its size and SHA-256."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self.digest = hashlib.sha256()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)

    def write(self, data: bytes) -> None:
        """Append and hash `data`; called in a worker thread, so neither blocks the event loop."""
        self.digest.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def finish(self) -> None:
        try:
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _upload_pace(ingest: Ingest) -> BodyPace:
    """An upload holds one of few slots: it must arrive at `uploads.min_bytes_per_second` on average."""
    return BodyPace(ingest.config.timeouts.body_timeout_seconds, ingest.config.uploads.min_bytes_per_second)


async def _spool(part: BodyPartReader, ingest: Ingest, pace: BodyDeadline) -> _Spooled:
    limit = ingest.config.uploads.max_upload_bytes
    spooled = await asyncio.to_thread(_Spooled, ingest.archives.incoming())
    try:
        pending: list[bytes] = []
        pending_bytes = 0
        while chunk := await part.read_chunk(256 * 1024):
            spooled.size += len(chunk)
            pace.received(spooled.size)
            if spooled.size > limit:
                raise PayloadTooLarge("Payload too large", f"the archive is larger than {limit} bytes")
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= CHUNK:
                await asyncio.to_thread(spooled.write, b"".join(pending))
                pending, pending_bytes = [], 0
        await asyncio.to_thread(spooled.write, b"".join(pending))
        await asyncio.to_thread(spooled.finish)
    except OSError as exc:
        spooled.discard()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage("Insufficient storage", "the ingest's disk is full; try again later") from None
        raise
    except BaseException:
        spooled.discard()
        raise
    return spooled


async def _skip_small(part: BodyPartReader) -> None:
    size = 0
    while chunk := await part.read_chunk(MAX_SMALL_PART):
        size += len(chunk)
        if size > MAX_SMALL_PART:
            raise PayloadTooLarge("Payload too large", f"part {part.name!r} is larger than {MAX_SMALL_PART} bytes")


async def _discard_body(request: web.Request, ingest: Ingest, limit: int) -> None:
    """Read what the client sends and keep none of it, so it gets the reply instead of a reset connection.

    A client too slow for the upload pace is simply cut off: its reply is already decided.
    """
    size = 0
    try:
        async with asyncio.timeout(None) as deadline:
            pace = BodyDeadline(deadline, _upload_pace(ingest))
            async for chunk in request.content.iter_chunked(CHUNK):
                size += len(chunk)
                pace.received(size)
                if size > limit:
                    return
    except TimeoutError:
        log.info("upload_duplicate_body_abandoned", reason="too slow")


async def _read_parts(request: web.Request, ingest: Ingest) -> tuple[_Spooled, str, str]:
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("Expected multipart/form-data", "send the archive as a multipart part named 'file'")
    found: tuple[_Spooled, str, str] | None = None
    try:
        async with asyncio.timeout(None) as deadline:
            pace = BodyDeadline(deadline, _upload_pace(ingest))
            found = await _read_each_part(await request.multipart(), ingest, pace)
    except TimeoutError:
        raise RequestTimeout("Request timeout", pace.cause()) from None
    except BadHttpMessage as exc:  # a part's headers aiohttp cannot parse (a control byte in a name): not a 500
        raise BadRequest("Invalid multipart body", f"a part's headers cannot be read: {exc.message}") from None
    if found is None:
        raise BadRequest("No archive", "the multipart body has no part named 'file' (or 'upload')")
    return found


async def _read_each_part(
    reader: MultipartReader, ingest: Ingest, pace: BodyDeadline
) -> tuple[_Spooled, str, str] | None:
    found: tuple[_Spooled, str, str] | None = None
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise BadRequest("Unexpected nested multipart", "send the archive as a part named 'file'")
            if part.name in FILE_PARTS and found is None:
                content_type = part.headers.get("Content-Type", "")
                service, category = parse_content_type(content_type, ingest.config.uploads.allowed_services)
                found = (await _spool(part, ingest, pace), service, category)
            else:  # `metadata` and anything else: read (bounded) and ignored.
                await _skip_small(part)
    except BaseException:
        if found is not None:
            found[0].discard()
        raise
    return found


def _limits(ingest: Ingest) -> Limits:
    uploads = ingest.config.uploads
    return Limits(uploads.max_uncompressed_bytes, uploads.max_records, uploads.max_record_bytes)


async def upload(request: web.Request) -> web.Response:
    ingest = request.app[INGEST]
    metrics = ingest.metrics
    try:
        ingest.upload_keys.check(request)
    except ApiError:
        metrics.uploads.labels("unauthorized").inc()
        raise
    if ingest.upload_slots.locked():
        metrics.uploads.labels("busy").inc()
        cause = "this ingest is receiving its maximum of uploads; retry shortly"
        return error_response(503, "Too many uploads at once", cause, {"Retry-After": BUSY_RETRY_AFTER})
    async with ingest.upload_slots:
        return await _receive(request, ingest)


async def _refused(ingest: Ingest, request_id: str, outcome: str, error: ApiError, size: int | None) -> None:
    """An upload refused for good (its sender quarantines it): counted, and kept for the insights."""
    ingest.metrics.uploads.labels(outcome).inc()
    at = iso(datetime.now(UTC))
    try:
        await ingest.db.call(ingest.db.storage.add_refusal, at, request_id, outcome, size, error.cause)
    except StorageFailure as exc:  # the refusal is answered all the same
        log.warning("refusal_not_kept", upload_request_id=request_id, error=str(exc))


async def _receive(request: web.Request, ingest: Ingest) -> web.Response:
    metrics = ingest.metrics
    request_id = _request_id(request)
    limit = ingest.config.uploads.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + MAX_SMALL_PART:
        error = PayloadTooLarge("Payload too large", f"uploads are limited to {limit} bytes")
        await _refused(ingest, request_id, "too_large", error, request.content_length)
        raise error
    known = await ingest.db.run(ingest.db.storage.find_upload, request_id)
    if known is not None:
        metrics.uploads.labels("duplicate_request").inc()
        log.info("upload_duplicate_request", upload_request_id=request_id)
        await _discard_body(request, ingest, limit + MAX_SMALL_PART)
        return _reply(known, "", "", None)
    try:
        with tracing.span("receive"):
            spooled, service, category = await _read_parts(request, ingest)
    except PayloadTooLarge as exc:
        await _refused(ingest, request_id, "too_large", exc, None)
        raise
    except UnsupportedMediaType as exc:
        await _refused(ingest, request_id, "unsupported", exc, None)
        raise
    except RequestTimeout:
        metrics.uploads.labels("too_slow").inc()
        log.warning("upload_too_slow", upload_request_id=request_id)
        raise
    try:
        with tracing.span("index", **{"lightspeed.bytes": spooled.size}):
            return await _store(ingest, request_id, spooled, service, category)
    finally:
        spooled.discard()  # a no-op once the archive was moved in place


async def _store(ingest: Ingest, request_id: str, spooled: _Spooled, service: str, category: str) -> web.Response:
    metrics = ingest.metrics
    try:
        records = await asyncio.to_thread(inspect_archive, spooled.path, _limits(ingest))
    except ArchiveRejected as exc:
        log.warning("upload_rejected", upload_request_id=request_id, bytes=spooled.size, reason=str(exc))
        error = BadRequest("Invalid archive", str(exc))
        await _refused(ingest, request_id, "rejected", error, spooled.size)
        raise error from None
    now = datetime.now(UTC)
    relative = f"{now:%Y/%m/%d}/{request_id}.tar.gz"
    info = UploadInfo(request_id, now, service, category, relative, spooled.size, spooled.digest.hexdigest())
    try:
        stored = await ingest.db.run(
            ingest.db.storage.add_upload, info, records, lambda: ingest.archives.publish(spooled.path, relative)
        )
    except DuplicateUpload:
        # The same request id arrived twice at once; the other one was stored.
        known = await ingest.db.run(ingest.db.storage.find_upload, request_id)
        if known is None:
            raise
        metrics.uploads.labels("duplicate_request").inc()
        return _reply(known, service, category, spooled.size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage("Insufficient storage", "the ingest's disk is full; try again later") from None
        raise
    if any(record.kind == ERASURE_FOLDER for record in records):
        ingest.erasures_waiting.set()  # committed as pending with the upload: the erasure task applies it
    metrics.uploads.labels("stored").inc()
    metrics.upload_bytes.inc(spooled.size)
    metrics.records.labels("new").inc(stored.new_records)
    metrics.records.labels("duplicate").inc(stored.duplicate_records)
    log.info(
        "upload_stored",
        upload_request_id=request_id,
        service=service,
        category=category,
        bytes=spooled.size,
        records=stored.records,
        duplicate_records=stored.duplicate_records,
    )
    return _reply(stored, service, category, spooled.size)
