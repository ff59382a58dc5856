"""A WebSocket over a trio stream, on the frames of :mod:`aoi.net.frames`; the same class
serves both ends (``client``: this end masks what it sends)."""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import Iterable
from typing import NoReturn

import trio

from . import fastio, frames
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
    than ``max_message`` (characters of a text, bytes of a binary one) is not buffered beyond
    that: it is returned cut at ``max_message + 1`` as soon as that many arrived, so the
    caller sees that it was too large, and the rest of it is dropped unread. Control frames
    are answered here; a framing error closes with its code (1002, or 1007 for text that is
    not UTF-8). ``received``: bytes that came after the handshake, before this object.
    """

    __slots__ = (
        "_backlog", "_decoder", "_dropping", "_mask", "_parts", "_pieces", "_reader",
        "_send_waiters", "_sending", "_size", "_stream", "closed", "max_message", "remote",
        "subprotocol", "ticket",
    )  # fmt: skip

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        client: bool = False,
        subprotocol: str | None,
        remote: str,
        max_message: int = 65536,
        ticket: Ticket = TRUSTED,
        received: bytes = b"",
    ) -> None:
        self._stream = stream
        self.ticket = ticket  # turns taken to read, until the owner trusts the peer
        self._mask = client
        self._reader = frames.Reader(masked=not client)
        self.subprotocol = subprotocol
        self.remote = remote
        self.max_message = max_message
        self.closed: ConnectionClosed | None = None
        # The send lock: taken while a task writes; others wait in line (made when first
        # needed: a trio.Lock costs an idle session about 330 bytes).
        self._sending = False
        self._send_waiters: trio.lowlevel.ParkingLot | None = None
        self._parts: list[str | bytes] = []
        self._size = 0
        self._dropping = False  # the rest of a message returned cut
        self._decoder: codecs.IncrementalDecoder | None = None  # a text in several pieces
        # Pieces read, not yet handled: a list (a deque is ~600 bytes per idle session).
        self._pieces: list[frames.Piece] = self._reader.feed(received) if received else []
        self._backlog = b""  # written by send_now only in part: goes out first on the next write

    async def receive(self) -> str | bytes:
        pieces = self._pieces
        while True:
            while pieces:
                opcode, final, payload = pieces.pop(0)
                # The common case first: one whole text frame, nothing buffered before it.
                if opcode == frames.TEXT and final and self._decoder is None and not self._parts:
                    if self._dropping:
                        self._dropping = False
                        continue
                    try:
                        text = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        await self._fail(1007, "a text message that is not UTF-8")
                    return text if len(text) <= self.max_message else text[: self.max_message + 1]
                message = await self._handle(opcode, final, payload)
                if message is not None:
                    return message
            if self.closed is not None:
                raise self.closed
            ticket = self.ticket
            if ticket.untrusted:
                ticket.give_back()
            try:
                data = await fastio.receive_some(
                    self._stream, RECEIVE_SIZE, wait_readable=ticket.wait_readable
                )
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                data = b""
            if data and ticket.untrusted:
                await ticket.take()
            if not data:
                self.closed = ConnectionClosed(1006, "connection lost")
                await self._abort()
                raise self.closed
            pieces.extend(self._reader.feed(data))

    async def send(self, message: str | bytes) -> None:
        """Send a text message (``str``) or a binary one (``bytes``)."""
        if isinstance(message, bytes):
            data = frames.frame(frames.BINARY, message, mask=self._mask)
        else:
            data = frames.frame(frames.TEXT, message.encode("utf-8"), mask=self._mask)
        await self._write(data)

    async def send_many(self, texts: Iterable[str]) -> None:
        """Send text messages in order in one write to the stream: one syscall and one
        checkpoint for the lot instead of one each. Nothing to send: no checkpoint."""
        data = self._frames(texts)
        if data:
            await self._write(data)

    def can_send_now(self) -> bool:
        """Whether :meth:`send_now` may be called: open, a plain TCP stream, nobody writing."""
        return (
            self.closed is None
            and not self._sending
            and not self._backlog
            and fastio.can_write_now(self._stream)
        )

    def send_now(self, texts: list[str]) -> bool:
        """Send text messages without waiting, from a task that is not this connection's
        writer; only when :meth:`can_send_now`. Whatever the kernel does not take at once
        is kept and goes out first on the next :meth:`send` or :meth:`send_many`: returns
        True when that is so (the caller wakes the writer). Never raises for the connection's
        troubles: those surface in the writer, as they would have."""
        if self.closed is not None:
            return True
        data = self._frames(texts)
        try:
            sent = fastio.write_now(self._stream, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return True  # the writer finds out, and ends the connection
        if sent == len(data):
            return False
        self._backlog = data[sent:]
        return True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code``; waits briefly for the peer's answer, then drops the stream."""
        if self.closed is None:
            self.closed = ConnectionClosed(code, reason)
            with contextlib.suppress(ConnectionClosed):
                await self._write(self._close_frame(code, reason), closing=True)
        await self._abort()

    def _frames(self, texts: Iterable[str]) -> bytes:
        mask, frame, text = self._mask, frames.frame, frames.TEXT
        return b"".join([frame(text, t.encode("utf-8"), mask=mask) for t in texts])

    def _close_frame(self, code: int, reason: str) -> bytes:
        return frames.frame(frames.CLOSE, frames.close_payload(code, reason), mask=self._mask)

    async def _handle(self, opcode: int, final: bool, payload: bytes) -> str | bytes | None:
        if opcode == frames.TEXT or opcode == frames.BINARY:
            return await self._data(opcode, final, payload)
        if opcode == frames.PING:
            await self._write(frames.frame(frames.PONG, payload, mask=self._mask))
        elif opcode == frames.CLOSE:
            try:
                code, reason = frames.parse_close(payload)
            except frames.FrameError as exc:
                await self._fail(exc.code, exc.reason)
            await self._fail(code, reason)  # the peer's close, answered with its code
        elif opcode == frames.FAILED:
            error = self._reader.error
            assert error is not None
            await self._fail(error.code, error.reason)
        return None

    async def _data(self, opcode: int, final: bool, payload: bytes) -> str | bytes | None:
        if self._dropping:
            self._dropping = not final
            return None
        part: str | bytes = payload
        if opcode == frames.TEXT:
            if self._decoder is None:
                self._decoder = codecs.getincrementaldecoder("utf-8")()
            try:
                part = self._decoder.decode(payload, final)
            except UnicodeDecodeError:
                await self._fail(1007, "a text message that is not UTF-8")
        self._parts.append(part)
        self._size += len(part)
        if not final:
            if self._size <= self.max_message:
                return None
            self._dropping = True
        parts, self._parts, self._size, self._decoder = self._parts, [], 0, None
        joined: str | bytes
        if opcode == frames.TEXT:
            joined = "".join(p for p in parts if isinstance(p, str))
        else:
            joined = b"".join(p for p in parts if isinstance(p, bytes))
        return joined[: self.max_message + 1]

    async def _fail(self, code: int, reason: str) -> NoReturn:
        """Close with ``code`` (the peer broke the protocol, or closed) and raise."""
        if self.closed is None:
            self.closed = ConnectionClosed(code, reason)
            with contextlib.suppress(ConnectionClosed):
                await self._write(self._close_frame(code, reason), closing=True)
        await self._abort()
        raise self.closed

    async def _write(self, data: bytes, closing: bool = False) -> None:
        if self.closed is not None and not closing:
            raise self.closed
        # A free lock is taken without passing through the scheduler (the send below
        # checkpoints anyway); a taken one is handed to its waiters in turn, as trio.Lock does.
        if self._sending:
            if self._send_waiters is None:
                self._send_waiters = trio.lowlevel.ParkingLot()
            await self._send_waiters.park()  # returns holding the lock
        else:
            self._sending = True
        try:
            if self._backlog:
                data, self._backlog = self._backlog + data, b""
            await fastio.send_all(self._stream, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.closed = self.closed or ConnectionClosed(1006, "connection lost")
            raise self.closed from exc
        finally:
            if self._send_waiters:
                self._send_waiters.unpark()  # the lock passes to the first in line
            else:
                self._sending = False

    async def _abort(self) -> None:
        with trio.move_on_after(1):
            await self._stream.aclose()


__all__ = ["ConnectionClosed", "WebSocket"]
