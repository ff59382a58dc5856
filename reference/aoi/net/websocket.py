"""A WebSocket over a trio stream, driven by wsproto; the same class serves both ends."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

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

from . import fastio
from .turns import TRUSTED, Ticket

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
    characters as soon as that many arrived, so the caller sees that it was too large, and
    the rest of it is dropped unread. Control frames are answered here.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        connection: WSConnection | Connection,
        *,
        subprotocol: str | None,
        remote: str,
        max_message: int = 65536,
        ticket: Ticket = TRUSTED,
    ) -> None:
        self._stream = stream
        self.ticket = ticket  # turns taken to read, until the owner trusts the peer
        self._ws = connection
        self.subprotocol = subprotocol
        self.remote = remote
        self.max_message = max_message
        self.closed: ConnectionClosed | None = None
        self._send_lock = trio.Lock()
        self._parts: list[str | bytes] = []
        self._size = 0
        self._dropping = False  # the rest of a message returned cut
        self._events: list[Event] = []  # a list: a deque is ~600 bytes per idle session
        self._backlog = b""  # written by send_now only in part: goes out first on the next write

    async def receive(self) -> str | bytes:
        events = self._events
        while True:
            while events:
                event = events.pop(0)
                # The common case first: one whole text frame, nothing buffered before it.
                if (
                    type(event) is TextMessage
                    and event.message_finished
                    and not self._parts
                    and not self._dropping
                ):
                    text = event.data
                    return text if len(text) <= self.max_message else text[: self.max_message + 1]
                message = await self._handle(event)
                if message is not None:
                    return message
            if self.closed is not None:
                raise self.closed
            ticket = self.ticket
            if ticket.untrusted:
                ticket.give_back()
            try:
                data = await fastio.receive_some(self._stream, RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                data = b""
            if data and ticket.untrusted:
                await ticket.take()
            if not data:
                self.closed = ConnectionClosed(1006, "connection lost")
                await self._abort()
                raise self.closed
            self._ws.receive_data(data)
            events.extend(self._ws.events())

    async def send(self, text: str) -> None:
        await self._write((TextMessage(data=text),))

    async def send_many(self, texts: Iterable[str]) -> None:
        """Send text messages in order in one write to the stream: one syscall and one
        checkpoint for the lot instead of one each. Nothing to send: no checkpoint."""
        events = [TextMessage(data=text) for text in texts]
        if events:
            await self._write(events)

    def can_send_now(self) -> bool:
        """Whether :meth:`send_now` may be called: open, a plain TCP stream, nobody writing."""
        return (
            self.closed is None
            and not self._send_lock.locked()
            and not self._backlog
            and fastio.can_write_now(self._stream)
        )

    def send_now(self, texts: list[str]) -> bool:
        """Send text messages without waiting, from a task that is not this connection's
        writer; only when :meth:`can_send_now`. Whatever the kernel does not take at once
        is kept and goes out first on the next :meth:`send` or :meth:`send_many`: returns
        True when that is so (the caller wakes the writer). Never raises for the connection's
        troubles: those surface in the writer, as they would have."""
        try:
            ws = self._ws
            data = b"".join([ws.send(TextMessage(data=text)) for text in texts])
            sent = fastio.write_now(self._stream, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, LocalProtocolError):
            return True  # the writer finds out, and ends the connection
        if sent == len(data):
            return False
        self._backlog = data[sent:]
        return True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code``; waits briefly for the peer's answer, then drops the stream."""
        if self.closed is None:
            self.closed = ConnectionClosed(code, reason)
            with contextlib.suppress(ConnectionClosed, LocalProtocolError):
                await self._write((CloseConnection(code=code, reason=reason),))
        await self._abort()

    async def _handle(self, event: Event) -> str | bytes | None:
        if isinstance(event, Message):
            if self._dropping:
                self._dropping = not event.message_finished
                return None
            self._parts.append(event.data)
            self._size += len(event.data)
            if not event.message_finished:
                if self._size <= self.max_message:
                    return None
                self._dropping = True
            joined: str | bytes
            if isinstance(event, TextMessage):
                joined = "".join(p for p in self._parts if isinstance(p, str))
            else:
                joined = b"".join(p for p in self._parts if isinstance(p, bytes))
            self._parts, self._size = [], 0
            return joined[: self.max_message + 1]
        if isinstance(event, Ping):
            await self._write((event.response(),))
        elif isinstance(event, CloseConnection):
            if self.closed is None:
                self.closed = ConnectionClosed(event.code, event.reason or "")
                with contextlib.suppress(ConnectionClosed, LocalProtocolError):
                    await self._write((event.response(),))
            await self._abort()
            raise self.closed
        return None

    async def _write(self, events: Iterable[Event]) -> None:
        # trio.Lock.acquire passes through the scheduler even when the lock is free; the
        # send below checkpoints anyway, so take a free lock without that detour.
        lock = self._send_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            ws = self._ws
            data = b"".join([ws.send(event) for event in events])
            if self._backlog:
                data, self._backlog = self._backlog + data, b""
            await fastio.send_all(self._stream, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.closed = self.closed or ConnectionClosed(1006, "connection lost")
            raise self.closed from exc
        finally:
            lock.release()

    async def _abort(self) -> None:
        with trio.move_on_after(1):
            await self._stream.aclose()


def client_connection() -> WSConnection:
    return WSConnection(ConnectionType.CLIENT)


__all__ = ["BytesMessage", "ConnectionClosed", "WebSocket", "client_connection"]
