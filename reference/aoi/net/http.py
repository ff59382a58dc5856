"""One listener for HTTP/1.1 (h11) and WebSocket upgrades (wsproto), on trio.

The owner gives a handler for plain requests and a handler per WebSocket path; everything
about bytes, keep-alive, limits and handshakes stays here. Nothing a peer sends stops the
listener: a request that is not HTTP/1.1 gets its 4xx (or 5xx) and a close, a slow one a
408 at its deadline, a handler that fails a 500, and a connection over the cap a 503.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import re
import resource
import ssl
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import h11
import trio
from wsproto import ConnectionType
from wsproto.events import AcceptConnection
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

from . import fastio, upgrade
from .throttled import Throttled
from .turns import Ticket, Turns
from .websocket import RECEIVE_SIZE, ConnectionClosed, WebSocket

MAX_HEAD = 16384  # bytes of a request head (request line and headers)
FD_RESERVE = 64  # descriptors kept from connections: the store, logs, admin
ADMIN_SOURCES = frozenset({"127.0.0.1", "::1"})
ADMIN_CONNECTIONS = 16  # connections from ADMIN_SOURCES allowed beyond the cap
LINGER_S = 2.0  # after an error answer, how long the rest of the request is read away
LINGER_BYTES = 1 << 20
ACCEPT_RETRY_S = 0.1  # after accept(2) failed for lack of descriptors or memory
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
HTTP_VERSIONS = frozenset({b"1.0", b"1.1"})
# A request line, checked while its head is still incomplete: "GET /\r\n" (HTTP/0.9) or
# other bytes that will never become an HTTP/1.x head are answered at once, not at the
# head's deadline.
REQUEST_LINE = re.compile(rb"[!-~]+ [!-~]+ HTTP/[0-9]\.[0-9]\r?")
_GONE = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    ssl.SSLError,
    OSError,
    ConnectionClosed,
)  # the peer went away, or spoke TLS or WebSocket wrongly: nothing more to do for it

log = logging.getLogger("aoi.net")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    remote: str


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def json(
        cls, status: int, document: Any, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        body = json.dumps(document, separators=(",", ":")).encode()
        return cls(status, body, "application/json", headers)

    @classmethod
    def error(
        cls,
        status: int,
        code: str,
        detail: str,
        headers: tuple[tuple[str, str], ...] = (),
        **extra: Any,
    ) -> Response:
        return cls.json(status, {"error": code, "detail": detail[:1024], **extra}, headers)

    def raw(self) -> bytes:
        """The whole answer as bytes, closing the connection: for a peer whose request
        could not be parsed (no HTTP state machine to write through)."""
        lines = [
            f"HTTP/1.1 {self.status} {_REASONS.get(self.status, b'').decode()}",
            f"content-type: {self.content_type}",
            f"content-length: {len(self.body)}",
            *(f"{name}: {value}" for name, value in self.headers),
            "connection: close",
        ]
        return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + self.body


_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


class Headers(Mapping[str, str]):
    """A request's headers by lower-case name, decoded only when asked for (most handlers
    look at one header, or none). A repeated header: the last one wins."""

    __slots__ = ("_decoded", "_raw")

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        self._raw = raw  # h11's: names already lower case
        self._decoded: dict[str, str] | None = None

    def _all(self) -> dict[str, str]:
        if self._decoded is None:
            self._decoded = {k.decode("latin-1"): v.decode("latin-1") for k, v in _items(self._raw)}
        return self._decoded

    def get(self, name: str, default: Any = None) -> Any:
        if self._decoded is not None:
            return self._decoded.get(name, default)
        wanted = name.encode("latin-1", "replace")
        found = None
        for k, v in _items(self._raw):
            if k == wanted:
                found = v
        return default if found is None else found.decode("latin-1")

    def __getitem__(self, name: str) -> str:
        return self._all()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"Headers({self._all()!r})"


HttpHandler = Callable[[Request], Awaitable[Response]]
WebSocketHandler = Callable[[WebSocket, Request], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WebSocketRoute:
    subprotocol: str
    handler: WebSocketHandler
    max_message: int = 65536


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
    once (0: as many as the open-file limit allows, less ``FD_RESERVE``); beyond that a
    connection gets 503 and is closed, except ``ADMIN_CONNECTIONS`` more from loopback, for
    operators.
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
        self.max_connections = max_connections or default_max_connections()
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
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host, backlog=4096)
        served: list[trio.abc.Listener[Any]] = list(listeners)
        if ssl_context is not None:
            served = [
                trio.SSLListener(listener, ssl_context, https_compatible=True)
                for listener in listeners
            ]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reap)
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
                    or _remote(stream) not in ADMIN_SOURCES
                ):
                    self.refused += 1
                    nursery.start_soon(self._refuse, stream)
                else:
                    nursery.start_soon(self._connection, stream)

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
        c = _Connection(stream, _remote(stream), self.turns.ticket())
        try:
            with c.scope:
                await self._serve_connection(c)
            if c.scope.cancel_called and c.partial:  # a deadline passed mid-request
                late = Response.error(408, "request_timeout", "the request did not come in time")
                with trio.move_on_after(1):
                    await fastio.send_all(stream, late.raw())
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

    async def _serve_connection(self, c: _Connection) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        websockets = self.websockets
        answered = False  # the peer is most likely waiting for the answer before sending more
        while True:
            try:
                head = await self._head(c, conn, expect_wait=answered)
            except _Refused as refused:
                await self._answer_and_close(c, refused.response)
                return
            if type(head) is not h11.Request:
                return
            refusal = _head_refusal(head)
            if refusal is not None:
                await self._answer_and_close(c, refusal)
                return
            target = head.target.decode("latin-1")
            path, _, query = target.partition("?")
            route = websockets.get(path)
            if route is not None:
                ws = await self._upgrade(c, conn, head, route)
                # The HTTP exchange is over. Nothing it parsed may live as long as the
                # WebSocket: h11's connection and request, wsproto's handshake and the
                # headers cost about 7 KB per idle session. Handlers get no headers.
                del conn, head
                if ws is not None:
                    c.partial = False
                    await route.handler(ws, Request("GET", path, query, {}, b"", c.remote))
                return
            method = head.method.decode("latin-1")
            try:
                body = await self._body(c, conn, head)
            except h11.RemoteProtocolError as exc:
                await self._answer_and_close(c, _protocol_error(exc, b""))
                return
            if body is None:
                response = Response.error(
                    413, "payload_too_large", f"body over {self.max_body} bytes"
                )
                await self._answer_and_close(c, response, conn)
                return
            request = Request(method, path, query, Headers(head.headers), body, c.remote)
            try:
                response = await self.http(request)
            except Exception:  # a handler bug must not take the listener down
                log.exception("request_failed", extra={"method": method, "path": path})
                response = Response.error(500, "internal_error", "the server failed")
            await self._respond(c.stream, conn, response, head_only=method == "HEAD")
            c.ticket.finish()
            answered = True
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _receive(self, c: _Connection, deadline: float, expect_wait: bool) -> bytes:
        """The peer's next bytes (``b""``: it closed); cancelled at ``deadline``."""
        ticket = c.ticket
        if ticket.untrusted:
            ticket.give_back()
        waiting = self._waiting
        waiting[c.scope] = deadline
        try:
            data = await fastio.receive_some(c.stream, RECEIVE_SIZE, expect_wait=expect_wait)
        finally:
            del waiting[c.scope]
        if c.scope.cancel_called:  # reaped just as bytes came: start nothing now
            await trio.lowlevel.checkpoint()  # raises Cancelled
        if data and ticket.untrusted:
            await ticket.take()
        return data

    async def _head(self, c: _Connection, conn: h11.Connection, *, expect_wait: bool) -> Any:
        """The next request head (``h11.Request``), or what ended the connection: it may
        take ``idle_timeout_s`` to begin, and ``head_timeout_s`` from its first byte."""
        deadline = trio.current_time() + self.idle_timeout_s
        line: bytes | None = b""  # an incomplete head, until its request line was checked
        received = data = b""
        while True:
            try:
                event = conn.next_event()
                if event is not h11.NEED_DATA:
                    return event
                if data and line is not None:
                    line = _check_request_line(line + data)
            except h11.RemoteProtocolError as exc:
                raise _Refused(_protocol_error(exc, received)) from exc
            if data and not c.partial:
                c.partial = True
                deadline = trio.current_time() + self.head_timeout_s
            data = await self._receive(c, deadline, expect_wait)
            received += data
            expect_wait = False
            conn.receive_data(data)
            if not data:
                return h11.ConnectionClosed()

    async def _body(self, c: _Connection, conn: h11.Connection, head: h11.Request) -> bytes | None:
        """The request's body, or ``None`` when it is larger than ``max_body``."""
        c.partial = True
        for name, value in _items(head.headers):
            if name == b"content-length" and _too_long(value, self.max_body):
                return None  # refused before a byte of it is read
        if conn.they_are_waiting_for_100_continue:
            await fastio.send_all(
                c.stream, conn.send(h11.InformationalResponse(status_code=100, headers=[]))
            )
        deadline = trio.current_time() + self.body_timeout_s
        parts: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await self._receive(c, deadline, False)
                conn.receive_data(data)
                if not data:
                    raise h11.RemoteProtocolError("the request body ended early", 400)
                continue
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.max_body:
                    return None
                parts.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                c.partial = False
                return parts[0] if len(parts) == 1 else b"".join(parts)
            else:
                raise h11.RemoteProtocolError("the request body ended early", 400)

    async def _respond(
        self,
        stream: trio.abc.Stream,
        conn: h11.Connection,
        response: Response,
        close: bool = False,
        head_only: bool = False,
    ) -> None:
        headers = [
            ("content-type", response.content_type),
            ("content-length", str(len(response.body))),
            *response.headers,
        ]
        if close:
            headers.append(("connection", "close"))
        status = response.status
        data = conn.send(
            h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b""))
        )
        if response.body and not head_only:
            data += conn.send(h11.Data(data=response.body))
        data += conn.send(h11.EndOfMessage())
        await fastio.send_all(stream, data)

    async def _answer_and_close(
        self, c: _Connection, response: Response, conn: h11.Connection | None = None
    ) -> None:
        """Answer an erroneous request and end the connection (its bytes may be anything)."""
        c.partial = False
        if conn is not None and conn.our_state is h11.SEND_RESPONSE:
            await self._respond(c.stream, conn, response, close=True)
        else:
            await fastio.send_all(c.stream, response.raw())
        await _linger(c.stream)

    async def _upgrade(
        self, c: _Connection, conn: h11.Connection, head: h11.Request, route: WebSocketRoute
    ) -> WebSocket | None:
        """Complete the handshake: the WebSocket, or ``None`` if it was refused (answered)."""
        headers = list(_items(head.headers))
        refusal = upgrade.refusal(head.method, head.http_version, headers, route.subprotocol)
        if refusal is None:
            handshake = H11Handshake(ConnectionType.SERVER)
            try:  # the rules above should leave wsproto nothing to object to
                handshake.initiate_upgrade_connection(headers, head.target)
                accepted = handshake.send(AcceptConnection(subprotocol=route.subprotocol))
            except WsRemoteProtocolError as exc:
                refusal = upgrade.Refusal(400, "invalid_upgrade", str(exc))
        if refusal is not None:
            response = Response.error(refusal.status, refusal.code, refusal.detail, refusal.headers)
            await self._answer_and_close(c, response, conn)
            return None
        await fastio.send_all(c.stream, accepted)
        connection = handshake.connection
        if connection is None:
            return None
        leftover, _closed = conn.trailing_data
        if leftover:
            connection.receive_data(bytes(leftover))
        return WebSocket(
            c.stream, connection, subprotocol=route.subprotocol, remote=c.remote,
            max_message=route.max_message, ticket=c.ticket,
        )  # fmt: skip


async def _linger(stream: trio.abc.Stream) -> None:
    """Half-close, then read what the peer still sends, for a while (a lingering close):
    closing a socket with unread bytes resets the connection, and the reset can reach the
    peer before the answer it was sent after."""
    if not isinstance(stream, trio.abc.HalfCloseableStream):
        return
    with trio.move_on_after(LINGER_S):
        await stream.send_eof()
        received = 0
        while received < LINGER_BYTES:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                return
            received += len(data)


def default_max_connections() -> int:
    """Connections the open-file limit allows, less the descriptors kept for the rest."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, soft - FD_RESERVE)


def _too_long(content_length: bytes, limit: int) -> bool:
    """Whether a Content-Length (h11 checked it: digits, or equal ones with commas) is
    over ``limit``."""
    return int(content_length.split(b",")[0]) > limit


def _check_request_line(head: bytes) -> bytes | None:
    """``head`` while its request line is still to be seen; ``None`` once it was fine.
    Raises for a line that no HTTP/1.x request starts with (HTTP/0.9's ``GET /``, say)."""
    line, newline, _ = head.lstrip(b"\r\n").partition(b"\n")
    if not newline:
        return head if len(head) < MAX_HEAD else None  # h11 answers an endless line
    if REQUEST_LINE.fullmatch(line):
        return None
    raise h11.RemoteProtocolError("not an HTTP/1.1 request line", 400)


def _head_refusal(head: h11.Request) -> Response | None:
    """What h11 lets through but this server refuses in a head: another HTTP version, a
    body framed twice (RFC 9112 6.1: request smuggling), a head over ``MAX_HEAD``."""
    if head.http_version not in HTTP_VERSIONS:
        version = head.http_version.decode("latin-1")
        return Response.error(
            505, "http_version_not_supported", f"HTTP/{version} is not served; use HTTP/1.1"
        )
    names = [name for name, _ in _items(head.headers)]
    if b"transfer-encoding" in names and b"content-length" in names:
        detail = "Content-Length and Transfer-Encoding together frame the body twice"
        return Response.error(400, "malformed_request", detail)
    size = len(head.target) + sum(len(n) + len(v) + 4 for n, v in _items(head.headers))
    if size > MAX_HEAD:
        return Response.error(431, "headers_too_large", f"request head over {MAX_HEAD} bytes")
    return None


class _Refused(Exception):
    """A request head that cannot be served; ``response`` is the answer."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


TRANSFER_ENCODING = re.compile(rb"(?im)^transfer-encoding:[ \t]*([^\r\n]*)")


def _protocol_error(exc: h11.RemoteProtocolError, head: bytes) -> Response:
    """The answer to a request h11 could not parse (``head``: its bytes so far)."""
    status = exc.error_status_hint
    if status == 431:
        return Response.error(431, "headers_too_large", f"request head over {MAX_HEAD} bytes")
    if status == 501:  # a transfer coding other than chunked alone
        codings = b",".join(TRANSFER_ENCODING.findall(head)).split(b",")
        if codings[-1].strip().lower() == b"chunked":
            detail = "only Transfer-Encoding: chunked is supported"
            return Response.error(501, "not_implemented", detail)
        # RFC 9112 6.3: without chunked last, the body's length cannot be known
        detail = "a Transfer-Encoding must end with chunked"
        return Response.error(400, "malformed_request", detail)
    return Response.error(400, "malformed_request", f"not a valid HTTP/1.1 request: {exc}")


def _items(headers: Sequence[tuple[bytes, bytes]]) -> Iterable[tuple[bytes, bytes]]:
    """(lower-case name, value) pairs. h11's ``Headers`` iterates one ``__getitem__`` at a
    time; its ``raw_items()`` is one list, with the names as sent."""
    raw_items = getattr(headers, "raw_items", None)
    if raw_items is None:
        return headers
    return [(name.lower(), value) for name, value in raw_items()]


def _remote(stream: trio.abc.Stream) -> str:
    inner: Any = stream
    while isinstance(inner, trio.SSLStream):
        inner = inner.transport_stream
    try:
        host, *_ = inner.socket.getpeername()
    except (AttributeError, OSError):
        return "unknown"
    return str(host)
