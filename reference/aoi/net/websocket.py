"""A WebSocket over a trio stream, driven by wsproto; the same class serves both ends."""

from __future__ import annotations

import contextlib

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

RECEIVE_SIZE = 16384


class ConnectionClosed(Exception):
    """The WebSocket is closed; ``code`` and ``reason`` as the closing side gave them."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed {code} {reason}".strip())
        self.code = code
        self.reason = reason


class WebSocket:
    """One WebSocket connection after its handshake.

    ``receive`` returns whole messages (text as ``str``, binary as ``bytes``). A message longer
    than ``max_message`` is not buffered beyond that: it is returned cut at ``max_message + 1``
    characters, so the caller sees that it was too large. Control frames are answered here.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        connection: WSConnection | Connection,
        *,
        subprotocol: str | None,
        remote: str,
        max_message: int = 65536,
    ) -> None:
        self._stream = stream
        self._ws = connection
        self.subprotocol = subprotocol
        self.remote = remote
        self.max_message = max_message
        self.closed: ConnectionClosed | None = None
        self._send_lock = trio.Lock()
        self._parts: list[str | bytes] = []
        self._size = 0
        self._events: list[Event] = []

    async def receive(self) -> str | bytes:
        while True:
            while self._events:
                event = self._events.pop(0)
                message = await self._handle(event)
                if message is not None:
                    return message
            if self.closed is not None:
                raise self.closed
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                data = b""
            if not data:
                self.closed = ConnectionClosed(1006, "connection lost")
                await self._abort()
                raise self.closed
            self._ws.receive_data(bytes(data))
            self._events.extend(self._ws.events())

    async def send(self, text: str) -> None:
        await self._write(TextMessage(data=text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code``; waits briefly for the peer's answer, then drops the stream."""
        if self.closed is None:
            self.closed = ConnectionClosed(code, reason)
            with contextlib.suppress(ConnectionClosed, LocalProtocolError):
                await self._write(CloseConnection(code=code, reason=reason))
        await self._abort()

    async def _handle(self, event: Event) -> str | bytes | None:
        if isinstance(event, Message):
            if self._size <= self.max_message:
                self._parts.append(event.data)
                self._size += len(event.data)
            if not event.message_finished:
                return None
            joined: str | bytes
            if isinstance(event, TextMessage):
                joined = "".join(p for p in self._parts if isinstance(p, str))
            else:
                joined = b"".join(p for p in self._parts if isinstance(p, bytes))
            self._parts, self._size = [], 0
            return joined[: self.max_message + 1]
        if isinstance(event, Ping):
            await self._write(event.response())
        elif isinstance(event, CloseConnection):
            if self.closed is None:
                self.closed = ConnectionClosed(event.code, event.reason or "")
                with contextlib.suppress(ConnectionClosed, LocalProtocolError):
                    await self._write(event.response())
            await self._abort()
            raise self.closed
        return None

    async def _write(self, event: Event) -> None:
        async with self._send_lock:
            try:
                data = self._ws.send(event)
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.closed = self.closed or ConnectionClosed(1006, "connection lost")
                raise self.closed from exc

    async def _abort(self) -> None:
        with trio.move_on_after(1):
            await self._stream.aclose()


def client_connection() -> WSConnection:
    return WSConnection(ConnectionType.CLIENT)


__all__ = ["BytesMessage", "ConnectionClosed", "WebSocket", "client_connection"]
