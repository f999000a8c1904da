"""The one place the daemons reach into aiohttp's private attributes: a header timeout for new connections.

aiohttp has no timeout for a new connection's first request head: a client
that opens connections and never finishes a request line holds a file
descriptor each until the process runs out (then accept() fails for
everyone). aiohttp 3.14 closes a connection that sends nothing within the
keep-alive timeout, but our header timeout is its own setting
(`timeouts.header_timeout_seconds`, 10 s, against keep-alive's 15 s), and no
public hook sits between accepting a connection and parsing its first head.

So this adapter, and nothing else, uses aiohttp's internals:
- `TCPSite.start`'s arguments, read back from the site (`_runner`, `_host`,
  `_port`, `_ssl_context`, `_backlog`, `_reuse_address`, `_reuse_port`), and
  its `_server`, to start the same listening server with our protocol factory;
- `RequestHandler._request_count`, the request heads parsed on a connection;
- the runners' `_reg_site`/`_unreg_site`, to hand a listening site from the application that answers
  while the server starts to the real one (`hand_over`), without closing the socket in between;
- `Server._kwargs` and `RequestHandler`'s `_close`, `_force_close` and `_current_request`: on a stop,
  aiohttp marks every connection closing and from then on drops what arrives on it, the rest of a
  request body too, so a request whose body was still arriving waited out the body timeout and got
  408 (aiohttp#2298, closed as won't fix). `FinishingHandler` goes on reading the body of the request
  being handled; the stop's grace period (`shutdown_timeout_seconds`) bounds it as it bounds the handler;
- asyncio's, not aiohttp's: when accept() runs out of file descriptors, the loop stops watching the
  listening socket and schedules `_start_serving` to watch it again a second later (a timer in
  `loop._scheduled`, one per failed accept). A site stopped before that second is up would have the
  timer watch a closed socket ("Invalid file descriptor: -1"), so `stop` cancels those timers first.

pyproject.toml pins aiohttp below its next minor release for this reason; the
hostile-client tests (tests/common/test_hostile_clients.py) are the guard a
version bump must pass.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from lightspeed_common.http.descriptors import HINT, ShortageLog

log = structlog.get_logger(__name__)


class GuardedSite(web.TCPSite):
    """A TCP site that closes a connection whose first request head is not complete in time. After the
    first request, the keep-alive timeout bounds the wait for the next head."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        header_timeout: float,
        sock: socket.socket | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._header_timeout = header_timeout
        self._sock = sock  # a socket already listening (a worker's, from the supervisor); else bind host:port

    def _connection(self) -> asyncio.BaseProtocol:
        server = self._runner.server
        assert server is not None  # the runner is set up before a site starts
        loop = asyncio.get_running_loop()
        handler = FinishingHandler(server, loop=loop, **server._kwargs)
        loop.call_later(self._header_timeout, _close_if_no_request, handler)
        return handler

    def hand_over(self, old: web.BaseRunner, new: web.BaseRunner) -> None:
        """From now on, connections accepted go to `new`'s application (those `old`'s has stay with it)."""
        old._unreg_site(self)
        new._reg_site(self)
        self._runner = new

    async def stop(self) -> None:
        if isinstance(self._server, asyncio.Server):
            _cancel_accept_retries(asyncio.get_running_loop(), {sock.fileno() for sock in self._server.sockets})
        await super().stop()

    async def start(self) -> None:
        # TCPSite.start with our protocol factory; the same arguments, read back from the site.
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(
                self._connection, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog
            )
            return
        self._server = await loop.create_server(
            self._connection,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )


class FinishingHandler(RequestHandler):
    """aiohttp's connection protocol, except that a stop does not drop the rest of the body of the request
    being handled (aiohttp discards all data on a connection marked closing)."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        closing = (self._close, self._force_close)
        request = self._current_request
        if not any(closing) or request is None or request.content.is_eof():
            super().data_received(data)
            return
        self._close = self._force_close = False
        try:
            super().data_received(data)  # the body's bytes; a pipelined request after it is never started
        finally:
            self._close, self._force_close = self._close or closing[0], self._force_close or closing[1]


def _close_if_no_request(handler: RequestHandler) -> None:
    # _request_count is aiohttp's count of request heads parsed on this connection.
    if handler.transport is not None and not handler._request_count:
        log.info("connection_closed_header_timeout")
        handler.force_close()  # closes the transport too


def _cancel_accept_retries(loop: asyncio.AbstractEventLoop, listening: set[int]) -> None:
    """Cancel the timers asyncio set to watch these listening sockets again after accept() ran out of file
    descriptors (BaseSelectorEventLoop._accept_connection): the socket is about to close."""
    start_serving = getattr(loop, "_start_serving", None)
    for timer in getattr(loop, "_scheduled", ()):
        callback, args = getattr(timer, "_callback", None), tuple(getattr(timer, "_args", None) or ())
        if callback == start_serving and len(args) > 1 and args[1].fileno() in listening:
            timer.cancel()


ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's message when accept() fails for lack of fds


class AcceptFailures:
    """The loop's exception handler: asyncio reports each accept() that fails for lack of file descriptors
    as an error with a traceback, up to 100 in one loop pass (it retries within the pass). Here they
    become one warning that says what happens and what to change, then at most one every
    `every_seconds` with the count in between. Every other report goes to asyncio's default handler."""

    def __init__(self, every_seconds: float = 10.0) -> None:
        self._log = ShortageLog("connections_not_accepted", "failed_accepts", every_seconds)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_FAILED:
            loop.default_exception_handler(context)
            return
        self._log.report(
            context.get("exception"),
            hint=f"new connections wait in the listen backlog and are accepted again in a second; {HINT}",
        )
