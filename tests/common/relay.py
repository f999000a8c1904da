"""A TCP relay on 127.0.0.1 that forwards what a client sends in small, slow pieces.

It stands for a real network between a client and a server: a request body
arrives in several reads, some while the handler is already running.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class SlowRelay:
    target_port: int
    piece_bytes: int = 16 * 1024
    gap_seconds: float = 0.05
    port: int = 0
    pieces: int = 0  # how many pieces went upstream, so a test can see the body was split
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> SlowRelay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        up = asyncio.ensure_future(self._pipe(client_reader, upstream_writer, slow=True))
        down = asyncio.ensure_future(self._pipe(upstream_reader, client_writer, slow=False))
        self._tasks |= {up, down}
        await asyncio.gather(up, down, return_exceptions=True)
        self._tasks -= {up, down}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, slow: bool) -> None:
        try:
            while data := await reader.read(64 * 1024):
                step = self.piece_bytes if slow else len(data)
                for start in range(0, len(data), step):
                    writer.write(data[start : start + step])
                    await writer.drain()
                    if slow:
                        self.pieces += 1
                        await asyncio.sleep(self.gap_seconds)  # the network's pace, not a synchronisation
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()
