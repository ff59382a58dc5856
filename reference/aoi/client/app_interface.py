"""AOI-1: the apps' WebSocket interface, on loopback only.

Each connection is read in its own task; what the client sends to an app goes through a
bounded queue and a writer task, so a slow app never holds up a server session. A
connection receives only the messages of the apps it registered.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

import trio

from aoi.core.codec import Codec
from aoi.core.errors import CloseCode, ErrorCode, LocalProtocolError, RemoteProtocolError
from aoi.core.messages import AppAck, AppRegister, AppUnregister, Error, Message
from aoi.logs import EventLog
from aoi.net.http import HttpServer, WebSocketRoute
from aoi.net.http_messages import Request, Response
from aoi.net.websocket import ConnectionClosed, WebSocket

from .apps import InFlight
from .binding import Binding

SUBPROTOCOL = "aoi-app.v1"
OUTBOX = 4096  # messages waiting for a slow app before its connection is dropped

_log = EventLog("aoi.client.apps")


class AppConnection:
    """One app connection (AppPeer): its apps, what it was sent and has not acked."""

    def __init__(self, ws: WebSocket, codec: Codec) -> None:
        self.ws = ws
        self.codec = codec
        self.apps: set[str] = set()
        self.inflight: dict[str, InFlight] = {}
        self.overflowed = False
        self.drained = trio.Event()
        self._out, self._queue = trio.open_memory_channel[str](OUTBOX)

    def send(self, message: Message) -> bool:
        if self.overflowed or self.ws.closed is not None:
            return False
        try:
            self._out.send_nowait(self.codec.encode(message))
        except trio.WouldBlock:
            self.overflowed = True
            _log.warning("app_too_slow", apps=sorted(self.apps))
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        except LocalProtocolError:
            _log.error("aoi1_encode_failed", type=message.type, exc_info=True)
            return False
        return True

    def finish(self) -> None:
        """Nothing more will be queued; the writer ends once the queue is sent."""
        self._out.close()

    async def writer(self, scope: trio.CancelScope) -> None:
        try:
            async for frame in self._queue:
                await self.ws.send(frame)
                if self.overflowed:
                    break
        except ConnectionClosed:
            pass
        self.drained.set()
        scope.cancel()


class _AnyPath(Mapping[str, WebSocketRoute]):
    """AOI-1 accepts the upgrade on any path."""

    def __init__(self, route: WebSocketRoute) -> None:
        self.route = route

    def __getitem__(self, path: str) -> WebSocketRoute:
        return self.route

    def __iter__(self) -> Iterator[str]:
        return iter(("/",))

    def __len__(self) -> int:
        return 1


class AppInterface:
    def __init__(self, binding: Binding) -> None:
        self.binding = binding
        self.codec = Codec.from_contract("aoi1")
        # The listener opens first, so that a port in use stops the client before it does
        # anything; apps that connect before the client has started wait for this.
        self.serving = trio.Event()

    async def listen(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen for AOI-1 on ``host:port`` (loopback only); reports the port it got. Apps
        are served once :attr:`serving` is set."""
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"AOI-1 listens on loopback addresses only, not {host}")
        server = HttpServer(self._http, _AnyPath(WebSocketRoute(SUBPROTOCOL, self._upgraded)))
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(server.serve, host, port)
            bound: Any = listeners[0].socket.getsockname()
            task_status.started(int(bound[1]))

    async def _http(self, request: Request) -> Response:
        return Response.error(
            426,
            "upgrade_required",
            f"AOI-1 is a WebSocket with subprotocol {SUBPROTOCOL}",
            headers=(("Upgrade", "websocket"),),
        )

    async def _upgraded(self, ws: WebSocket, request: Request) -> None:
        await self.serving.wait()
        try:
            await self.serve_connection(ws)
        except Exception:  # one app's trouble must not take the listener down
            _log.error("app_connection_failed", exc_info=True)

    async def serve_connection(self, ws: WebSocket) -> None:
        """Serve one app connection until it closes."""
        conn = AppConnection(ws, self.codec)
        _log.debug("app_connected", remote=ws.remote)
        close: tuple[int, str] = (CloseCode.NORMAL, "")
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.writer, nursery.cancel_scope)
                close = await self._read(conn)
                conn.finish()
                with trio.move_on_after(1):
                    await conn.drained.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.binding.app_disconnected(conn)
            _log.debug("app_disconnected", apps=sorted(conn.apps))
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await ws.close(*close)

    async def _read(self, conn: AppConnection) -> tuple[int, str]:
        while True:
            try:
                frame = await conn.ws.receive()
            except ConnectionClosed:
                return CloseCode.NORMAL, ""
            try:
                if isinstance(frame, bytes):
                    raise RemoteProtocolError(
                        ErrorCode.MALFORMED_FRAME, "binary messages are not AOI"
                    )
                message = self.codec.decode(frame)
            except RemoteProtocolError as err:
                conn.send(Error(code=err.code.value, detail=err.detail[:1024], fatal=err.fatal))
                if err.fatal:
                    return err.close_code, err.code.value
                continue
            self._dispatch(conn, message)

    def _dispatch(self, conn: AppConnection, message: Message) -> None:
        if isinstance(message, AppRegister):
            self.binding.app_register(conn, message)
        elif isinstance(message, AppUnregister):
            self.binding.app_unregister(conn, message.app_id)
        elif isinstance(message, AppAck):
            self.binding.app_ack(conn, message.id)
        else:
            detail = f"{message.type!r} is sent by the AOI Client, not by apps"
            conn.send(Error(code=ErrorCode.UNEXPECTED_MESSAGE.value, detail=detail, fatal=False))
