"""Connections to Redis: the socket, the first words on it, and connecting again with backoff.

A connection counts as made once Redis answered its handshake, which always ends with PING:
a Redis that restarted and is still loading its data answers ``-LOADING``, and the attempt
counts as failed, so callers wait for a Redis that has all its data instead of getting
errors from it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from aoi.core.policy import Backoff
from aoi.logs import EventLog

from .resp import (
    Command,
    ConnectionLost,
    LoadingError,
    Parser,
    RedisAddress,
    RedisError,
    Reply,
    ReplyError,
    Unreachable,
    new_parser,
    pack_all,
)

RECEIVE_BYTES = 256 * 1024
BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)  # a socket that failed
RECONNECT = Backoff(initial_ms=50, max_ms=2000, multiplier=2.0)

log = EventLog("aoi.server.store.redis")


@dataclass(frozen=True, slots=True)
class Connection:
    """A socket to Redis and the parser of what it sent (which may hold more than was read)."""

    stream: trio.abc.Stream
    parser: Parser

    async def roundtrip(self, commands: Sequence[Command]) -> list[Reply]:
        """Send ``commands`` and read their replies, while nobody else uses the connection."""
        await self.stream.send_all(pack_all(commands))
        replies: list[Reply] = []
        while len(replies) < len(commands):
            reply = self.parser.gets()
            if reply is not False:
                replies.append(reply)
                continue
            data = await self.stream.receive_some(RECEIVE_BYTES)
            if not data:
                raise ConnectionLost("Redis closed the connection")
            self.parser.feed(data)
        return replies


@dataclass(frozen=True, slots=True)
class Connector:
    """How one client connects: where to, under which name, how patiently."""

    address: RedisAddress
    name: str | None = None
    connect_timeout: float = 5.0
    backoff: Backoff = RECONNECT

    async def connect(self, then: Sequence[Command] = ()) -> Connection:
        """A connection that went through the handshake and then ``then`` (e.g. SUBSCRIBE),
        every reply checked. Raises :class:`Unreachable`, or the :class:`ReplyError` of a
        refused handshake (a wrong password, an unknown database)."""
        commands = [*self.address.handshake(self.name), ("PING",), *then]
        try:
            with trio.fail_after(self.connect_timeout):
                if self.address.path is not None:
                    stream: trio.abc.Stream = await trio.open_unix_socket(self.address.path)
                else:
                    stream = await trio.open_tcp_stream(self.address.host, self.address.port)
                connection = Connection(stream, new_parser())
                try:
                    replies = await connection.roundtrip(commands)
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, ConnectionLost) as exc:
            why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise Unreachable(f"cannot connect to {self.address}: {why}") from exc
        for reply in replies:
            if isinstance(reply, ReplyError):
                await trio.aclose_forcefully(stream)
                if isinstance(reply, LoadingError):
                    raise Unreachable(f"{self.address} is loading its data") from reply
                raise reply
        return connection

    async def reconnect(self, then: Sequence[Command] = ()) -> Connection:
        """Connect again after a loss: exponential backoff with full jitter between attempts,
        for as long as it takes (the caller's cancel scope bounds it)."""
        attempt = 0
        while True:
            await trio.sleep(self.backoff.delay_s(attempt, random.random()))
            try:
                return await self.connect(then)
            except RedisError as exc:
                log.warning("redis_connect_failed", address=str(self.address), error=str(exc))
            attempt += 1
