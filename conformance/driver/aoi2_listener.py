"""The WebSocket side of the suite's AOI Servers: a loopback listener on trio + wsproto that
accepts the AOI Client's connections (over TLS when given a context), takes the upgrade,
reads and sends frames and closes, logging every byte.

Each frame the client sends is judged against the schemas and kept, with its arrival time
(``time.monotonic()``), on its :class:`~conformance.driver.server_connection.ServerConnection`;
what the server answers is its subclass's
(:class:`~conformance.driver.aoi2_server.SuiteServer`).
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from conformance import contract
from conformance.driver.frames import ABNORMAL, SUBPROTOCOL, Closed, Frame
from conformance.driver.portal import LoopbackListener, Portal
from conformance.driver.server_connection import ServerConnection
from conformance.wirelog import WireLog

GARBAGE = b"\x00\xffNOT HTTP\r\n\x16\x03\x01\r\n\r\n"  # no status line, no headers
TLS_HANDSHAKE_S = 10.0


class Aoi2Listener(LoopbackListener):
    """Accepts AOI-2 connections on a free loopback port and keeps all that happens on them."""

    def __init__(
        self,
        portal: Portal,
        wirelog: WireLog,
        name: str,
        *,
        on_change: Callable[[], None],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(portal)
        self.wirelog = wirelog
        self.name = name
        self.on_change = on_change
        self.tls = tls
        # "serve", "close" (at once), "no_subprotocol", "garbage" (bytes that are not HTTP)
        self.on_connect = "serve"
        self.connections: list[ServerConnection] = []

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/aoi"

    @property
    def http_base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def _stop(self) -> None:
        for conn in self.connections:
            if conn.scope is not None:
                conn.scope.cancel()
        await super()._stop()

    def _log(self, conn: ServerConnection, direction: str, text: str) -> None:
        self.wirelog.add(conn.label, direction, text)

    def _mark_closed(
        self, conn: ServerConnection, code: int, reason: str, *, by_target: bool
    ) -> None:
        if conn.closed is None:
            conn.closed = Closed(code, reason, time.monotonic(), by_target)
            self._log(conn, "--", f"closed {code} {reason}".strip())
            self.on_change()

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = ServerConnection(
            len(self.connections) + 1,
            f"aoi2 {self.name}#{len(self.connections) + 1}",
            time.monotonic(),
        )
        conn.lock = trio.Lock()
        self.connections.append(conn)
        self._log(conn, "--", f"connection from the AOI Client to {self.url}")
        self.on_change()
        try:
            with trio.CancelScope() as scope:
                conn.scope = scope
                if self.on_connect == "close":
                    self._mark_closed(
                        conn, ABNORMAL, "closed by the suite at once", by_target=False
                    )
                    return
                conn.stream = stream
                if self.tls is not None:
                    tls = trio.SSLStream(stream, self.tls, server_side=True)
                    try:
                        with trio.fail_after(TLS_HANDSHAKE_S):
                            await tls.do_handshake()
                    except (trio.BrokenResourceError, trio.TooSlowError, OSError) as e:
                        cause = e.__cause__ or e
                        conn.tls_error = f"{type(cause).__name__}: {cause}"
                        self._mark_closed(
                            conn,
                            ABNORMAL,
                            f"TLS handshake failed: {conn.tls_error}",
                            by_target=True,
                        )
                        return
                    self._log(conn, "--", "TLS handshake completed")
                    conn.stream = tls
                await self._serve(conn)
        finally:
            if conn.closed is None:
                self._mark_closed(conn, ABNORMAL, "connection ended", by_target=False)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await (conn.stream or stream).aclose()

    async def _serve(self, conn: ServerConnection) -> None:
        assert conn.stream is not None
        ws = conn.ws = WSConnection(ConnectionType.SERVER)
        while True:  # the upgrade
            try:
                data = await conn.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                self._mark_closed(conn, ABNORMAL, f"lost before the upgrade: {e}", by_target=True)
                return
            if not data:
                self._mark_closed(conn, ABNORMAL, "closed before the upgrade", by_target=True)
                return
            ws.receive_data(bytes(data))
            request = next((e for e in ws.events() if isinstance(e, Request)), None)
            if request is not None:
                break
        conn.offered = list(request.subprotocols)
        self._log(conn, "<-", f"upgrade {request.target} subprotocols={conn.offered}")
        if self.on_connect == "garbage":
            await self._send_bytes(conn, GARBAGE, "an answer to the upgrade that is not HTTP")
            self._mark_closed(conn, ABNORMAL, "answered with garbage", by_target=False)
            return
        if self.on_connect == "no_subprotocol":
            await self._raw(conn, ws.send(AcceptConnection()))
            self._log(conn, "->", "101 upgrade, no subprotocol selected")
        elif SUBPROTOCOL in conn.offered:
            conn.selected = SUBPROTOCOL
            await self._raw(conn, ws.send(AcceptConnection(subprotocol=SUBPROTOCOL)))
            self._log(conn, "->", f"101 upgrade, subprotocol={SUBPROTOCOL}")
        else:
            await self._raw(conn, ws.send(RejectConnection(status_code=400)))
            self._log(conn, "->", f"400: the upgrade does not offer {SUBPROTOCOL}")
            self._mark_closed(conn, ABNORMAL, "upgrade refused", by_target=False)
            return
        self.on_change()
        while conn.closed is None:
            try:
                data = await conn.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                self._mark_closed(conn, ABNORMAL, f"connection lost: {e}", by_target=True)
                return
            if not data:
                self._mark_closed(
                    conn, ABNORMAL, "TCP closed without a close frame", by_target=True
                )
                return
            try:
                ws.receive_data(bytes(data))
                for event in ws.events():
                    await self._on_event(conn, event)
            except Exception as e:  # a WebSocket protocol violation by the client
                self._log(conn, "--", f"WebSocket protocol error: {e}")
                self._mark_closed(conn, ABNORMAL, f"WebSocket protocol error: {e}", by_target=True)
                return

    async def _on_event(self, conn: ServerConnection, event: object) -> None:
        assert conn.ws is not None
        if isinstance(event, Message):
            conn.partial.append(event.data)
            if event.message_finished:
                parts, conn.partial = conn.partial, []
                if isinstance(event, TextMessage):
                    await self._received(conn, "".join(str(p) for p in parts))
                elif isinstance(event, BytesMessage):
                    await self._received(conn, b"".join(bytes(p) for p in parts))  # type: ignore[arg-type]
        elif isinstance(event, Ping):
            await self._raw(conn, conn.ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            self._log(conn, "<-", f"close {event.code} {event.reason or ''}".strip())
            if conn.ws.state is ConnectionState.REMOTE_CLOSING:
                await self._raw(conn, conn.ws.send(event.response()))
            self._mark_closed(conn, event.code, event.reason or "", by_target=True)

    async def _received(self, conn: ServerConnection, raw: str | bytes) -> None:
        self.wirelog.frame(conn.label, "<-", raw)
        message, problems = contract.read_frame(raw, contract.aoi2_errors)
        frame = Frame(len(conn.frames) + 1, time.monotonic(), raw, message, problems)
        conn.frames.append(frame)
        self.on_change()
        await self._answer(conn, frame)

    async def _answer(self, conn: ServerConnection, frame: Frame) -> None:
        """Answer a frame the client sent: the AOI Server's side of the protocol."""
        raise NotImplementedError

    # --- sending ----------------------------------------------------------------------------

    async def _raw(self, conn: ServerConnection, data: bytes) -> bool:
        if conn.stream is None or conn.lock is None:
            return False
        try:
            async with conn.lock:
                await conn.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return False
        return True

    async def _send(self, conn: ServerConnection, message: dict[str, Any]) -> bool:
        if conn.ws is None or conn.ws.state is not ConnectionState.OPEN or conn.closed is not None:
            self._log(conn, "--", "not sent (connection not open): " + json.dumps(message)[:200])
            return False
        text = json.dumps(message)
        self.wirelog.frame(conn.label, "->", text)
        return await self._raw(conn, conn.ws.send(TextMessage(data=text)))

    async def _close(self, conn: ServerConnection, code: int, reason: str) -> None:
        if conn.ws is not None and conn.ws.state is ConnectionState.OPEN:
            self._log(conn, "->", f"close {code} {reason}".strip())
            await self._raw(conn, conn.ws.send(CloseConnection(code=code, reason=reason)))
        self._mark_closed(conn, code, reason, by_target=False)
        if conn.scope is not None:
            conn.scope.cancel()

    async def _send_bytes(self, conn: ServerConnection, data: bytes, what: str) -> bool:
        self._log(conn, "->", f"{what}: {data[:64]!r}")
        return await self._raw(conn, data)

    async def _drop(self, conn: ServerConnection) -> None:
        conn.dropped_at = time.monotonic()
        self._log(conn, "--", "the suite drops the connection (no close frame)")
        self._mark_closed(conn, ABNORMAL, "dropped by the suite", by_target=False)
        if conn.scope is not None:
            conn.scope.cancel()
