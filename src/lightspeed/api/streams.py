"""The answer streams in progress, by request id, so POST /v1/streaming_query/interrupt can stop one.

In this process's memory: a stream lives on the connection that carries it, so only the process
holding the connection can stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class RunningStream:
    user_id: str
    task: asyncio.Task[None]


class RunningStreams:
    def __init__(self) -> None:
        self._streams: dict[str, RunningStream] = {}

    def new_id(self, wanted: str) -> str:
        """`wanted` (the request's X-Request-ID) when it is a UUID no running stream has, else a new one:
        the interrupt takes UUIDs only, as lightspeed-stack's does."""
        try:
            uuid.UUID(wanted)
        except ValueError:
            return str(uuid.uuid4())
        return wanted if wanted not in self._streams else str(uuid.uuid4())

    @contextlib.contextmanager
    def running(self, request_id: str, user_id: str, task: asyncio.Task[None]) -> Iterator[None]:
        self._streams[request_id] = RunningStream(user_id, task)
        try:
            yield
        finally:
            del self._streams[request_id]

    def interrupt(self, request_id: str, user_id: str) -> bool:
        """Stop the stream if it is running and `user_id` started it; False otherwise (another user's
        stream is as unknown to the caller as one that never was)."""
        stream = self._streams.get(request_id)
        if stream is None or stream.user_id != user_id or stream.task.done():
            return False
        stream.task.cancel()
        return True
