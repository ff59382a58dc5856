"""Receiving Redis pub/sub messages under trio, on a connection of their own.

Pub/sub delivers at most once: what is published while the subscriber is not connected is
lost. So when the connection breaks, the subscription connects again (backoff with full
jitter), subscribes again, and hands its reader a :class:`Gap` between the messages before
and after: whoever relies on the messages reconciles from durable state there.

A connection that carries nothing for ``keepalive_s`` seconds while someone waits for a
message is asked PING; no answer within ``reply_timeout`` seconds and it is taken as broken.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from aoi.core.policy import Backoff

from .redis_connection import BROKEN, RECEIVE_BYTES, RECONNECT, Connection, Connector, log
from .resp import ClientClosed, ProtocolError, RedisAddress, pack

_PING = pack(("PING",))


@dataclass(frozen=True, slots=True)
class Message:
    channel: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class Gap:
    """The subscription was down; messages published meanwhile are lost."""

    reason: str


class Subscription:
    """Messages of some channels, in the order Redis sent them: :meth:`connect` (or use
    :func:`open_subscription`), then ``async for event in subscription``. No task of its own:
    :meth:`receive` reads the socket in the caller's task, one caller at a time."""

    def __init__(
        self,
        address: RedisAddress | str,
        channels: Sequence[str | bytes],
        *,
        name: str | None = None,
        connect_timeout: float = 5.0,
        keepalive_s: float = 5.0,
        reply_timeout: float = 10.0,
        backoff: Backoff = RECONNECT,
    ) -> None:
        if not channels:
            raise ValueError("subscribe to at least one channel")
        if isinstance(address, str):
            address = RedisAddress.from_url(address)
        self.address = address
        self.channels = tuple(channels)
        self.keepalive_s = keepalive_s
        self.reply_timeout = reply_timeout
        self.connections = 0
        self._connector = Connector(address, name, connect_timeout, backoff)
        self._subscribe = [("SUBSCRIBE", channel) for channel in self.channels]
        self._state = "new"  # -> open -> closed
        self._connection: Connection | None = None
        self._lost = ""  # why the last connection broke, while there is none

    async def connect(self) -> None:
        """Connect and subscribe; a failure raises (:class:`Unreachable`, ...)."""
        if self._state != "new":
            raise RuntimeError("a Subscription connects once")
        self._state = "open"
        try:
            self._connection = await self._connector.connect(self._subscribe)
        except BaseException:
            self._state = "closed"
            raise
        self.connections += 1

    async def aclose(self) -> None:
        self._state = "closed"
        connection, self._connection = self._connection, None
        if connection is not None:
            await trio.aclose_forcefully(connection.stream)

    async def receive(self) -> Message | Gap:
        """The next message; after the connection broke, it connects again (with backoff,
        for as long as the caller's cancel scope lets it) and returns a :class:`Gap`."""
        while True:
            if self._state != "open":
                raise ClientClosed("the subscription is closed")
            connection = self._connection
            if connection is None:
                self._connection = await self._connector.reconnect(self._subscribe)
                self.connections += 1
                return Gap(self._lost)
            try:
                reply = connection.parser.gets()
                match reply:
                    case False:
                        await self._read_more(connection)
                    case [b"message", bytes(channel), bytes(payload)]:
                        return Message(channel, payload)
                    case [b"subscribe" | b"pong", *_]:
                        pass
                    case _:
                        raise ProtocolError(f"not a pub/sub event: {reply!r}")
            except (*BROKEN, ProtocolError, _Silent) as exc:
                self._lost = str(exc) or repr(exc)
                log.warning("redis_subscription_lost", address=str(self.address), reason=self._lost)
                self._connection = None
                await trio.aclose_forcefully(connection.stream)

    async def _read_more(self, connection: Connection) -> None:
        """Feed the parser; a quiet connection is asked PING, and must answer in time."""
        with trio.move_on_after(self.keepalive_s):
            return await self._feed(connection)
        await connection.stream.send_all(_PING)
        with trio.move_on_after(self.reply_timeout):
            return await self._feed(connection)
        raise _Silent(f"no answer to PING within {self.reply_timeout} s")

    @staticmethod
    async def _feed(connection: Connection) -> None:
        data = await connection.stream.receive_some(RECEIVE_BYTES)
        if not data:
            raise _Silent("Redis closed the connection")
        connection.parser.feed(data)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message | Gap:
        try:
            return await self.receive()
        except ClientClosed:
            raise StopAsyncIteration from None


class _Silent(Exception):
    """The connection said nothing more: closed by Redis, or no answer to PING."""


@asynccontextmanager
async def open_subscription(
    address: RedisAddress | str, channels: Sequence[str | bytes], **options: Any
) -> AsyncIterator[Subscription]:
    """A :class:`Subscription` that has subscribed, closed on leaving the block."""
    subscription = Subscription(address, channels, **options)
    await subscription.connect()
    try:
        yield subscription
    finally:
        await subscription.aclose()
