"""Receiving Redis pub/sub messages under trio, on a connection of their own.

Pub/sub delivers at most once: what is published while the subscriber is not connected is
lost. So when the connection breaks, the subscription connects again (backoff with full
jitter), subscribes again, and hands its reader a :class:`Gap` between the messages before
and after: whoever relies on the messages reconciles from durable state there.

A connection that carries nothing for ``keepalive_s`` seconds is asked PING; no answer within
``reply_timeout`` seconds and it is taken as broken.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from aoi.core.policy import Backoff

from .redis_connection import RECEIVE_BYTES, RECONNECT, Connection, Connector, log
from .resp import ClientClosed, ProtocolError, RedisAddress, pack

_PING = pack(("PING",))
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


@dataclass(frozen=True, slots=True)
class Message:
    channel: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class Gap:
    """The subscription was down; messages published meanwhile are lost."""

    reason: str


class Subscription:
    """Messages of some channels, in the order Redis sent them; start :meth:`run` first
    (or use :func:`open_subscription`), then ``async for event in subscription``."""

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
        buffer: int = 4096,
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
        # Bounded: a reader that falls behind stops the reading, and Redis buffers for it
        # (up to its client-output-buffer-limit for pubsub, then it drops the connection).
        self._send, self._receive = trio.open_memory_channel[Message | Gap](buffer)
        self._started = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect and subscribe (a first failure raises), report readiness, then receive
        until cancelled."""
        await self._keep(await self._connect_first(), task_status=task_status)

    async def _connect_first(self) -> Connection:
        if self._started:
            raise RuntimeError("a Subscription runs once")
        self._started = True
        try:
            return await self._connector.connect(self._subscribe)
        except BaseException:
            self._send.close()
            raise

    async def _keep(
        self,
        connection: Connection,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with self._send:
            task_status.started()
            while True:
                self.connections += 1
                try:
                    reason = await self._listen(connection)
                finally:
                    await trio.aclose_forcefully(connection.stream)
                log.warning("redis_subscription_lost", address=str(self.address), reason=reason)
                connection = await self._connector.reconnect(self._subscribe)
                await self._send.send(Gap(reason))

    async def _listen(self, connection: Connection) -> str:
        """Pass messages on until the connection breaks; why it broke."""
        stream, parser = connection.stream, connection.parser
        pinged = False
        try:
            while True:
                reply = parser.gets()
                while reply is not False:
                    match reply:
                        case [b"message", bytes(channel), bytes(payload)]:
                            await self._send.send(Message(channel, payload))
                        case [b"subscribe" | b"pong", *_]:
                            pass
                        case _:
                            raise ProtocolError(f"not a pub/sub event: {reply!r}")
                    reply = parser.gets()
                with trio.move_on_after(self.reply_timeout if pinged else self.keepalive_s):
                    data = await stream.receive_some(RECEIVE_BYTES)
                    if not data:
                        return "Redis closed the connection"
                    parser.feed(data)
                    pinged = False
                    continue
                if pinged:
                    return f"no answer to PING within {self.reply_timeout} s"
                await stream.send_all(_PING)
                pinged = True
        except _BROKEN as exc:
            return f"connection failed: {exc!r}"
        except ProtocolError as exc:
            return f"not RESP: {exc}"

    async def receive(self) -> Message | Gap:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ClientClosed("the subscription stopped") from None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message | Gap:
        try:
            return await self.receive()
        except ClientClosed:
            raise StopAsyncIteration from None


@asynccontextmanager
async def open_subscription(
    address: RedisAddress | str, channels: Sequence[str | bytes], **options: Any
) -> AsyncIterator[Subscription]:
    """A :class:`Subscription` that has subscribed, stopped on leaving the block."""
    subscription = Subscription(address, channels, **options)
    connection = await subscription._connect_first()  # outside the nursery: its error alone
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(subscription._keep, connection))
        try:
            yield subscription
        finally:
            nursery.cancel_scope.cancel()
