"""Framing between the server and its record writer process.

Request: `!QII` (request id, path length, data length), the path, the data.
Reply: `!QHH` (request id, errno or 0, reason length), the reason.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

REQUEST = struct.Struct("!QII")
REPLY = struct.Struct("!QHH")


def pack_request(request_id: int, path: str, data: bytes) -> bytes:
    encoded = path.encode("utf-8")
    return REQUEST.pack(request_id, len(encoded), len(data)) + encoded + data


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_request(stream: BinaryIO) -> tuple[int, str, bytes] | None:
    """The next request, or None at end of input (a torn last frame counts as the end)."""
    header = _read_exactly(stream, REQUEST.size)
    if header is None:
        return None
    request_id, path_length, data_length = REQUEST.unpack(header)
    body = _read_exactly(stream, path_length + data_length)
    if body is None:
        return None
    return request_id, body[:path_length].decode("utf-8"), body[path_length:]


def pack_reply(request_id: int, error: int, reason: str) -> bytes:
    encoded = reason.encode("utf-8")[:1000]
    return REPLY.pack(request_id, error, len(encoded)) + encoded
