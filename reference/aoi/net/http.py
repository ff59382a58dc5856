"""One listener for HTTP/1.1 (llhttp, see :mod:`aoi.net.http1`) and WebSocket upgrades, on trio.

The owner gives a handler for plain requests and a handler per WebSocket path; everything
about bytes, keep-alive, limits and handshakes stays here. Nothing a peer sends stops the
listener: a request that is not HTTP/1.1 gets its 4xx (or 5xx) and a close, a slow one a
408 at its deadline, a handler that fails a 500, and a connection over the cap a 503.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from . import fastio, http1, sockets, upgrade
from .http_messages import Headers, Request, Response
from .throttled import Throttled
from .turns import Ticket, Turns
from .websocket import RECEIVE_SIZE, ConnectionClosed, WebSocket

ADMIN_SOURCES = frozenset({"127.0.0.1", "::1"})
ADMIN_CONNECTIONS = 16  # connections from ADMIN_SOURCES allowed beyond the cap
ACCEPT_RETRY_S = 0.1  # after accept(2) failed for lack of descriptors or memory
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_GONE = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    ssl.SSLError,
    OSError,
    ConnectionClosed,
)  # the peer went away, or spoke TLS or WebSocket wrongly: nothing more to do for it

log = logging.getLogger("aoi.net")


HttpHandler = Callable[[Request], Awaitable[Response]]
WebSocketHandler = Callable[[WebSocket, Request], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WebSocketRoute:
    subprotocol: str
    handler: WebSocketHandler
    max_message: int = 65536


# The name trio would give each connection's task, made once: not a new string per connection.
_CONNECTION_TASK = f"{__name__}.HttpServer._connection"


class _Connection:
    """One accepted connection as the listener tracks it."""

    __slots__ = ("partial", "remote", "scope", "stream", "ticket")

    def __init__(self, stream: trio.abc.Stream, remote: str, ticket: Ticket) -> None:
        self.stream = stream
        self.remote = remote
        self.scope = trio.CancelScope()  # cancelled by _reap, at the connection's deadline
        self.partial = False  # part of a request received: a deadline then answers 408
        self.ticket = ticket  # until its first request is answered, it works in turns


class HttpServer:
    """Serves ``http`` for plain requests and ``websockets[path]`` for upgrades.

    Deadlines: a request head must be complete ``head_timeout_s`` after its first byte, a
    body ``body_timeout_s`` after its head; before a request (the first one too) a connection
    may stay idle ``idle_timeout_s``. At most ``max_connections`` connections are served at
    once (0: as many as the open-file limit allows, less ``sockets.FD_RESERVE``); beyond
    that a connection gets 503 and is closed, except ``ADMIN_CONNECTIONS`` more from
    loopback, for operators.
    """

    def __init__(
        self,
        http: HttpHandler,
        websockets: Mapping[str, WebSocketRoute],
        *,
        max_body: int = 65536,
        idle_timeout_s: float = 60.0,
        head_timeout_s: float = 10.0,
        body_timeout_s: float = 30.0,
        max_connections: int = 0,
    ) -> None:
        self.http = http
        self.websockets = websockets
        self.max_body = max_body
        self.idle_timeout_s = idle_timeout_s
        self.head_timeout_s = head_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_connections = max_connections or sockets.default_max_connections()
        self.turns = Turns()  # for connections until their first request is answered
        self.connections = 0
        self.refused = 0  # connections answered 503 at the cap
        self.accept_errors = 0  # accept(2) failures for lack of descriptors or memory
        self.failures = 0  # connections ended by an unexpected error (logged)
        self._accept_log = Throttled(log, "accept_failed")
        self._failure_log = Throttled(log, "connection_failed")
        # Connections waiting for the peer's bytes, until when (see _reap).
        self._waiting: dict[trio.CancelScope, float] = {}

    async def serve(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if reuse_port:
            listeners = [await sockets.reuse_port_listener(host, port)]
        else:
            listeners = await trio.open_tcp_listeners(port, host=host, backlog=4096)
        served: list[trio.abc.Listener[Any]] = list(listeners)
        if ssl_context is not None:
            served = [
                trio.SSLListener(listener, ssl_context, https_compatible=True)
                for listener in listeners
            ]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reap)
            nursery.start_soon(self.turns.run)
            for listener in served:
                nursery.start_soon(self._accept, listener, nursery)
            task_status.started(listeners)

    async def _accept(self, listener: trio.abc.Listener[Any], nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                        raise
                    self.accept_errors += 1
                    self._accept_log.report(
                        error=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                        detail=exc.strerror,
                        connections=self.connections,
                    )
                    await trio.sleep(ACCEPT_RETRY_S)
                    continue
                if self.connections >= self.max_connections and (
                    self.connections >= self.max_connections + ADMIN_CONNECTIONS
                    or sockets.peer_address(stream) not in ADMIN_SOURCES
                ):
                    self.refused += 1
                    nursery.start_soon(self._refuse, stream)
                else:
                    nursery.start_soon(self._connection, stream, name=_CONNECTION_TASK)

    async def _refuse(self, stream: trio.abc.Stream) -> None:
        """Over the cap: 503 on a plain TCP stream (a TLS handshake costs more than the
        refusal is worth), then close."""
        with trio.move_on_after(1):
            if type(stream) is trio.SocketStream:
                response = Response.error(
                    503, "overloaded", "too many connections", (("retry-after", "1"),)
                )
                with contextlib.suppress(*_GONE):
                    await fastio.send_all(stream, response.raw())
            await trio.aclose_forcefully(stream)

    async def _connection(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        c = _Connection(stream, sockets.peer_address(stream), self.turns.ticket())
        upgraded: Awaitable[None] | None = None
        try:
            with c.scope:
                upgraded = await self._serve_connection(c)
            if c.scope.cancel_called and c.partial:  # a deadline passed mid-request
                late = Response.error(408, "request_timeout", "the request did not come in time")
                with trio.move_on_after(1):
                    await fastio.send_all(stream, late.raw())
            elif upgraded is not None:
                # The WebSocket's handler, outside the scope of the HTTP deadlines (which
                # no longer apply): an idle session then holds one cancel scope fewer.
                await upgraded
        except* _GONE:
            pass
        except* Exception:  # a bug must cost one connection, never the listener
            self.failures += 1
            self._failure_log.report(exc_info=True, remote=c.remote)
        finally:
            c.ticket.finish()
            self.connections -= 1
            self._waiting.pop(c.scope, None)
            with trio.move_on_after(1):
                await stream.aclose()

    async def _reap(self) -> None:
        """Cancel connections whose deadline passed while they waited for the peer.

        One task for all connections instead of a timeout around every receive: a cancel
        scope costs more than the rest of a small request's bookkeeping. The check runs
        every tenth of the shortest timeout, so a connection goes a little after its
        deadline, never before."""
        shortest = min(self.idle_timeout_s, self.head_timeout_s, self.body_timeout_s)
        period = min(1.0, max(0.01, shortest / 10))
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            for scope, deadline in list(self._waiting.items()):
                if deadline <= now:
                    scope.cancel()

    async def _serve_connection(self, c: _Connection) -> Awaitable[None] | None:
        """Serve HTTP requests until the connection ends; after an accepted upgrade, the
        WebSocket's handler, for the caller to run."""
        parser = http1.RequestParser(self.max_body)
        websockets = self.websockets
        answered = False  # the peer is most likely waiting for the answer before sending more
        while True:
            head = await self._next(c, parser, expect_wait=answered)
            if head is None:
                return None
            if type(head) is http1.Refusal:
                response = Response.error(head.status, head.code, head.detail)
                await self._answer_and_close(c, response)
                return None
            assert type(head) is http1.Head
            target = head.target.decode("latin-1")
            path, _, query = target.partition("?")
            route = websockets.get(path)
            if route is not None:
                ws = await self._upgrade(c, head, route)
                # The HTTP exchange is over. Nothing it parsed may live as long as the
                # WebSocket: the parser, the request and its headers. Handlers get no headers.
                del parser, head
                if ws is None:
                    return None
                c.partial = False
                return route.handler(ws, Request("GET", path, query, {}, b"", c.remote))
            method = head.method.decode("latin-1")
            if head.upgrade and _declares_body(head.headers):
                detail = "a request that asks for an upgrade here carries no body"
                await self._answer_and_close(c, Response.error(400, "malformed_request", detail))
                return None
            request = Request(method, path, query, Headers(head.headers), head.body, c.remote)
            try:
                response = await self.http(request)
            except Exception:  # a handler bug must not take the listener down
                log.exception("request_failed", extra={"method": method, "path": path})
                response = Response.error(500, "internal_error", "the server failed")
            close = not head.keep_alive
            await fastio.send_all(c.stream, response.encode(close, head_only=method == "HEAD"))
            c.ticket.finish()
            answered = True
            if close:
                return None

    async def _receive(self, c: _Connection, deadline: float, expect_wait: bool) -> bytes:
        """The peer's next bytes (``b""``: it closed); cancelled at ``deadline``."""
        ticket = c.ticket
        if ticket.untrusted:
            ticket.give_back()
        waiting = self._waiting
        waiting[c.scope] = deadline
        try:
            data = await fastio.receive_some(
                c.stream, RECEIVE_SIZE, expect_wait=expect_wait, wait_readable=ticket.wait_readable
            )
        finally:
            del waiting[c.scope]
        if c.scope.cancel_called:  # reaped just as bytes came: start nothing now
            await trio.lowlevel.checkpoint()  # raises Cancelled
        if data and ticket.untrusted:
            await ticket.take()
        return data

    async def _next(
        self, c: _Connection, parser: http1.RequestParser, *, expect_wait: bool
    ) -> http1.Head | http1.Refusal | None:
        """The next request (or the refusal that ends the connection); ``None`` when the
        peer closed between requests. A request may take ``idle_timeout_s`` to begin,
        ``head_timeout_s`` for its head from its first byte and ``body_timeout_s`` for its
        body from its head."""
        ready = parser.ready
        deadline = trio.current_time() + self.idle_timeout_s
        phase = 0  # what the deadline is for: 0 the start, 1 the head, 2 the body
        while not ready:
            if parser.done:
                return None
            if parser.head_done:
                if phase < 2:
                    phase, deadline = 2, trio.current_time() + self.body_timeout_s
                if parser.continue_expected:
                    parser.continue_expected = False
                    await fastio.send_all(c.stream, CONTINUE)
            elif parser.started and phase < 1:
                phase, deadline = 1, trio.current_time() + self.head_timeout_s
            c.partial = parser.started
            data = await self._receive(c, deadline, expect_wait)
            expect_wait = False
            parser.feed(data)
            if not data and not ready:
                return None
        c.partial = False
        return ready.pop(0)

    async def _answer_and_close(self, c: _Connection, response: Response) -> None:
        """Answer an erroneous request and end the connection (its bytes may be anything)."""
        c.partial = False
        await fastio.send_all(c.stream, response.raw())
        await sockets.linger(c.stream)

    async def _upgrade(
        self, c: _Connection, head: http1.Head, route: WebSocketRoute
    ) -> WebSocket | None:
        """Complete the handshake: the WebSocket, or ``None`` if it was refused (answered)."""
        headers = head.headers
        version = head.version.encode("latin-1")
        refusal = upgrade.refusal(head.method, version, headers, route.subprotocol)
        if refusal is None and not head.upgrade:  # the rules above should leave llhttp agreeing
            refusal = upgrade.Refusal(400, "invalid_upgrade", "not an upgrade request")
        if refusal is not None:
            response = Response.error(refusal.status, refusal.code, refusal.detail, refusal.headers)
            await self._answer_and_close(c, response)
            return None
        key = next(v for k, v in headers if k == b"sec-websocket-key").decode("latin-1").strip()
        await fastio.send_all(c.stream, upgrade.accepted(key, route.subprotocol))
        return WebSocket(
            c.stream, subprotocol=route.subprotocol, remote=c.remote,
            max_message=route.max_message, ticket=c.ticket, received=head.leftover,
        )  # fmt: skip


def _declares_body(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    return any(
        name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0")
        for name, value in headers
    )
