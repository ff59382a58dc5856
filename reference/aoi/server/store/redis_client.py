"""A Redis client for trio: one connection shared by every caller, pipelined.

Callers append their commands to one output buffer; the caller that finds nobody writing
sends it, with the commands that other callers append while it writes (automatic
pipelining). Redis replies in order, and one reader task hands each reply to its caller. A
pipeline or a MULTI/EXEC transaction goes into the buffer in one piece, so no other caller's
command lands inside it.

Blocking commands (BLPOP, XREAD BLOCK) would hold up every caller of the connection: give
them a client of their own. Pub/sub has its own connection (:mod:`.redis_pubsub`).

Failures:

- A caller's timeout is a cancel scope around its call. A command whose caller was cancelled
  may still run; its reply is read and dropped.
- When the connection breaks, every command in flight fails with :class:`ConnectionLost`
  (it may or may not have run; nothing is sent twice) and the client connects again, with
  exponential backoff and full jitter. Calls made meanwhile wait for the new connection,
  for as long as their cancel scope lets them.
- A connection on which replies are awaited and nothing arrives for ``reply_timeout``
  seconds (a Redis that hangs, a network cut without a reset) is taken as broken.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio

from aoi.core.policy import Backoff

from .redis_connection import BROKEN, RECEIVE_BYTES, RECONNECT, Connection, Connector, log
from .resp import (
    Arg,
    ClientClosed,
    Command,
    ConnectionLost,
    NoScriptError,
    ProtocolError,
    RedisAddress,
    Reply,
    ReplyError,
    Script,
    Value,
    pack,
    pack_all,
)


class _Pending:
    """Commands sent together, waiting for their replies."""

    __slots__ = ("done", "error", "expected", "replies")

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.replies: list[Reply] = []
        self.error: ConnectionLost | None = None
        self.done = trio.Event()


class _Link:
    """A connection while it is up. There is no writer task: a caller that finds nobody
    writing writes the buffer itself, with whatever other callers add meanwhile, which
    saves a task switch per round trip."""

    __slots__ = ("lost", "reply_scope", "stream", "writing")

    def __init__(self, stream: trio.abc.Stream, lost: Callable[[str], None]) -> None:
        self.stream = stream
        self.lost = lost  # ends the link, with why
        self.writing = False
        self.reply_scope: trio.CancelScope | None = None  # the reader's, with its deadline


class RedisClient:
    """Redis for many concurrent callers over one connection; start :meth:`run` first
    (``await nursery.start(client.run)``, or :func:`open_redis`)."""

    def __init__(
        self,
        address: RedisAddress | str,
        *,
        name: str | None = None,
        connect_timeout: float = 5.0,
        reply_timeout: float = 10.0,
        backoff: Backoff = RECONNECT,
    ) -> None:
        if isinstance(address, str):
            address = RedisAddress.from_url(address)
        self.address = address
        self.reply_timeout = reply_timeout
        self.connections = 0  # made so far: more than one means it reconnected
        self._connector = Connector(address, name, connect_timeout, backoff)
        self._state = "new"  # -> running -> stopped
        self._link: _Link | None = None
        self._connected = trio.Event()  # set while a link is up, or once stopped
        self._waiting: deque[_Pending] = deque()  # in the order their commands were sent
        self._output = bytearray()  # commands not yet handed to the socket

    @property
    def connected(self) -> bool:
        return self._link is not None

    # --- the connection --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect (a first failure raises :class:`Unreachable`), report readiness, then keep
        a connection up until cancelled."""
        await self._keep(await self._connect_first(), task_status=task_status)

    async def _connect_first(self) -> Connection:
        if self._state != "new":
            raise RuntimeError("a RedisClient runs once")
        self._state = "running"
        try:
            return await self._connector.connect()
        except BaseException:
            self._state = "stopped"
            raise

    async def _keep(
        self,
        connection: Connection,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            task_status.started()
            while True:
                reason = await self._serve(connection)
                log.warning("redis_connection_lost", address=str(self.address), reason=reason)
                connection = await self._connector.reconnect()
        finally:
            self._state = "stopped"
            self._connected.set()  # wakes the callers waiting for a connection: it is over

    async def _serve(self, connection: Connection) -> str:
        """Read replies from ``connection`` until it breaks; why it broke."""
        reasons: list[str] = []
        self.connections += 1
        try:
            with trio.CancelScope() as scope:

                def lost(reason: str) -> None:
                    reasons.append(reason)
                    scope.cancel()

                self._link = link = _Link(connection.stream, lost)
                self._connected.set()
                await self._read(connection, link)
        finally:
            self._link = None
            self._connected = trio.Event()
            self._output = bytearray()
            waiting, self._waiting = self._waiting, deque()
            for pending in waiting:
                pending.error = ConnectionLost(
                    reasons[0] if reasons else "the client stopped with this command in flight"
                )
                pending.done.set()
            await trio.aclose_forcefully(connection.stream)
        return reasons[0]

    async def _read(self, connection: Connection, link: _Link) -> None:
        stream, parser = connection.stream, connection.parser
        waiting = self._waiting
        with trio.CancelScope() as scope:
            link.reply_scope = scope
            try:
                while True:
                    reply = parser.gets()
                    while reply is not False:
                        if not waiting:
                            raise ProtocolError(f"a reply nobody asked for: {reply!r}")
                        pending = waiting[0]
                        pending.replies.append(reply)
                        if len(pending.replies) == pending.expected:
                            waiting.popleft()
                            pending.done.set()
                        reply = parser.gets()
                    scope.deadline = (
                        trio.current_time() + self.reply_timeout if waiting else math.inf
                    )
                    data = await stream.receive_some(RECEIVE_BYTES)
                    if not data:
                        return link.lost("Redis closed the connection")
                    parser.feed(data)
            except BROKEN as exc:
                return link.lost(f"receiving failed: {exc!r}")
            except ProtocolError as exc:
                return link.lost(f"not RESP: {exc}")
        if scope.cancelled_caught:
            link.lost(f"no reply within {self.reply_timeout} s")

    async def _flush(self, link: _Link) -> None:
        """Write the buffer until it stays empty. Shielded: a write cut in the middle would
        leave half a command on the connection."""
        link.writing = True
        try:
            with trio.CancelScope(shield=True):
                while self._output and self._link is link:
                    data, self._output = self._output, bytearray()
                    await link.stream.send_all(data)
        except BROKEN as exc:
            link.lost(f"sending failed: {exc!r}")
        finally:
            link.writing = False

    # --- commands --------------------------------------------------------------------

    async def _send(self, data: bytes, expected: int) -> list[Reply]:
        while (link := self._link) is None:
            if self._state != "running":
                raise ClientClosed(f"the Redis client of {self.address} is not running")
            await self._connected.wait()
        pending = _Pending(expected)
        if not self._waiting and link.reply_scope is not None:
            link.reply_scope.deadline = trio.current_time() + self.reply_timeout
        self._waiting.append(pending)
        self._output += data
        if not link.writing:
            await self._flush(link)
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.replies

    async def execute(self, *command: Arg) -> Value:
        """One command's reply; an error reply raises (:class:`ReplyError` and its kinds)."""
        (reply,) = await self._send(pack(command), 1)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def pipeline(self, commands: Sequence[Command]) -> list[Reply]:
        """Several commands in one write; their replies, an error reply in its place."""
        if not commands:
            return []
        return await self._send(pack_all(commands), len(commands))

    async def transaction(self, commands: Sequence[Command]) -> list[Reply]:
        """``commands`` between MULTI and EXEC: all run, or none (``ExecAbortError`` when one
        was refused while queued, chained to that refusal)."""
        replies = await self.pipeline([("MULTI",), *commands, ("EXEC",)])
        result = replies[-1]
        if isinstance(result, ReplyError):
            refused = next((r for r in replies[1:-1] if isinstance(r, ReplyError)), None)
            raise result from refused
        if not isinstance(result, list):
            raise ProtocolError(f"EXEC answered {result!r}")
        return result

    async def run_script(
        self, script: Script, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()
    ) -> Value:
        """Run ``script`` by its SHA1; the first time after Redis lost it, in full."""
        try:
            return await self.execute(*script.evalsha(keys, args))
        except NoScriptError:
            return await self.execute(*script.eval(keys, args))


@asynccontextmanager
async def open_redis(address: RedisAddress | str, **options: Any) -> AsyncIterator[RedisClient]:
    """A connected :class:`RedisClient`, stopped on leaving the block."""
    client = RedisClient(address, **options)
    connection = await client._connect_first()  # outside the nursery: its error comes alone
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(client._keep, connection))
        try:
            yield client
        finally:
            nursery.cancel_scope.cancel()
