"""One listener for HTTP/1.1 (h11) and WebSocket upgrades (wsproto), on trio.

The owner gives a handler for plain requests and a handler per WebSocket path; everything
about bytes, keep-alive, limits and handshakes stays here.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import h11
import trio
from wsproto import ConnectionType
from wsproto.events import AcceptConnection
from wsproto.events import Request as WsRequest
from wsproto.handshake import H11Handshake

from . import fastio
from .websocket import RECEIVE_SIZE, ConnectionClosed, WebSocket

MAX_HEAD = 16384

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
        return cls.json(status, {"error": code, "detail": detail, **extra}, headers)


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


class HttpServer:
    """Serves ``http`` for plain requests and ``websockets[path]`` for upgrades."""

    def __init__(
        self,
        http: HttpHandler,
        websockets: Mapping[str, WebSocketRoute],
        *,
        max_body: int = 65536,
        idle_timeout_s: float = 60.0,
    ) -> None:
        self.http = http
        self.websockets = websockets
        self.max_body = max_body
        self.idle_timeout_s = idle_timeout_s
        self.connections = 0
        # Connections waiting for the peer's bytes, since when (see _reap_idle).
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
        tcp = listeners
        served: list[trio.abc.Listener[Any]] = list(listeners)
        if ssl_context is not None:
            served = [
                trio.SSLListener(listener, ssl_context, https_compatible=True)
                for listener in listeners
            ]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reap_idle)
            task_status.started(tcp)
            await trio.serve_listeners(self._connection, served)

    async def _connection(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        remote = _remote(stream)
        try:
            with trio.CancelScope() as scope:  # cancelled by _reap_idle
                await self._serve_connection(stream, remote, scope)
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            ssl.SSLError,
            OSError,
            h11.ProtocolError,
            ConnectionClosed,
        ):
            pass  # the peer went away or spoke nonsense: nothing more to do for it
        finally:
            self.connections -= 1
            self._waiting.pop(scope, None)
            with trio.move_on_after(1):
                await stream.aclose()

    async def _reap_idle(self) -> None:
        """Close connections that waited ``idle_timeout_s`` for the peer's next bytes.

        One task for all connections instead of a timeout around every receive: a cancel
        scope costs more than the rest of a small request's bookkeeping. The check runs
        every tenth of the timeout, so a connection goes after 1.0 to 1.1 times it."""
        period = max(0.01, self.idle_timeout_s / 10)
        while True:
            await trio.sleep(period)
            limit = trio.current_time() - self.idle_timeout_s
            for scope, since in list(self._waiting.items()):
                if since <= limit:
                    scope.cancel()

    async def _serve_connection(
        self, stream: trio.abc.Stream, remote: str, scope: trio.CancelScope
    ) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        websockets = self.websockets
        answered = False  # the peer is most likely waiting for the answer before sending more
        while True:
            head = await self._next(stream, conn, scope, expect_wait=answered)
            if type(head) is not h11.Request:
                return
            target = head.target.decode("latin-1")
            path, _, query = target.partition("?")
            route = websockets.get(path)
            if route is not None and _is_websocket_upgrade(head.headers):
                ws = await self._upgrade(stream, conn, head, route, remote)
                # The HTTP exchange is over. Nothing it parsed may live as long as the
                # WebSocket: h11's connection and request, wsproto's handshake and the
                # headers cost about 7 KB per idle session. Handlers get no headers.
                del conn, head
                if ws is not None:
                    await route.handler(ws, Request("GET", path, query, {}, b"", remote))
                return
            body, too_large = await self._body(stream, conn, scope)
            if too_large:
                response = Response.error(
                    413, "payload_too_large", f"body over {self.max_body} bytes"
                )
                await self._respond(stream, conn, response, close=True)
                return
            method = head.method.decode("latin-1")
            request = Request(method, path, query, Headers(head.headers), body, remote)
            try:
                response = await self.http(request)
            except Exception:  # a handler bug must not take the listener down
                log.exception("request_failed", extra={"method": method, "path": path})
                response = Response.error(500, "internal_error", "the server failed")
            await self._respond(stream, conn, response, head_only=method == "HEAD")
            answered = True
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _next(
        self,
        stream: trio.abc.Stream,
        conn: h11.Connection,
        scope: trio.CancelScope,
        *,
        expect_wait: bool = False,
    ) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            waiting = self._waiting
            waiting[scope] = trio.current_time()
            try:
                data = await fastio.receive_some(stream, RECEIVE_SIZE, expect_wait=expect_wait)
            finally:
                del waiting[scope]
            expect_wait = False
            if scope.cancel_called:  # idle: reaped just as bytes came; start nothing now
                data = b""
            conn.receive_data(data)
            if not data:
                return h11.ConnectionClosed()

    async def _body(
        self, stream: trio.abc.Stream, conn: h11.Connection, scope: trio.CancelScope
    ) -> tuple[bytes, bool]:
        parts: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                event = await self._next(stream, conn, scope)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size <= self.max_body:
                    parts.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                body = parts[0] if len(parts) == 1 else b"".join(parts)
                return body, size > self.max_body
            else:
                raise h11.RemoteProtocolError("request body ended early")
            if size > 4 * self.max_body:
                return b"", True

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
        data = conn.send(h11.Response(status_code=response.status, headers=headers))
        if response.body and not head_only:
            data += conn.send(h11.Data(data=response.body))
        data += conn.send(h11.EndOfMessage())
        await fastio.send_all(stream, data)

    async def _upgrade(
        self,
        stream: trio.abc.Stream,
        conn: h11.Connection,
        head: h11.Request,
        route: WebSocketRoute,
        remote: str,
    ) -> WebSocket | None:
        """Complete the handshake: the WebSocket, or ``None`` if it was refused."""
        handshake = H11Handshake(ConnectionType.SERVER)
        handshake.initiate_upgrade_connection(list(head.headers), head.target)
        ws_request = next((e for e in handshake.events() if isinstance(e, WsRequest)), None)
        if ws_request is None:
            return None
        if route.subprotocol not in ws_request.subprotocols:
            detail = f"offer the WebSocket subprotocol {route.subprotocol}"
            response = Response.error(400, "unsupported_subprotocol", detail)
            await self._respond(stream, conn, response, close=True)
            return None
        await stream.send_all(handshake.send(AcceptConnection(subprotocol=route.subprotocol)))
        connection = handshake.connection
        if connection is None:
            return None
        leftover, _closed = conn.trailing_data
        if leftover:
            connection.receive_data(bytes(leftover))
        return WebSocket(
            stream, connection, subprotocol=route.subprotocol, remote=remote,
            max_message=route.max_message,
        )  # fmt: skip


def _items(headers: Sequence[tuple[bytes, bytes]]) -> Iterable[tuple[bytes, bytes]]:
    """(lower-case name, value) pairs. h11's ``Headers`` iterates one ``__getitem__`` at a
    time; its ``raw_items()`` is one list, with the names as sent."""
    raw_items = getattr(headers, "raw_items", None)
    if raw_items is None:
        return headers
    return [(name.lower(), value) for name, value in raw_items()]


def _is_websocket_upgrade(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    value = b""
    for name, found in _items(headers):
        if name == b"upgrade":
            value = found
    return value.lower() == b"websocket"


def _remote(stream: trio.abc.Stream) -> str:
    inner: Any = stream
    while isinstance(inner, trio.SSLStream):
        inner = inner.transport_stream
    try:
        host, *_ = inner.socket.getpeername()
    except (AttributeError, OSError):
        return "unknown"
    return str(host)
