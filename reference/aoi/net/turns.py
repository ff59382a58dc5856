"""Turns: the work of connections not yet trusted is done a few connections at a time.

trio runs every task that is ready in one batch, so a storm of new connections (thousands
of upgrades and hellos arriving together) makes every batch long, and an established
session waits for the whole batch at each of the few steps a notification takes. So a
connection that has not authenticated yet works only while it holds a turn, and there are
few turns (:data:`TURNS`): it takes one when the peer's bytes arrive, gives it back before
it waits for more, and stops taking turns once trusted (its first HTTP request answered,
or its hello welcomed). Waiting connections hold no turn, so slow peers cannot use them
up; those that wait for a turn are served in order.

Waking costs too: two thousand sockets that become readable at one instant would wake two
thousand tasks in one batch, only for most of them to queue for a turn. So untrusted
connections wait for their bytes in a :class:`WaitingRoom`, an epoll set of its own that
trio's sees as one descriptor, and at most :data:`TURNS` of them are woken per batch.
"""

from __future__ import annotations

import contextlib
import select
import socket

import trio

TURNS = 4
_READY = getattr(select, "EPOLLIN", 0) | getattr(select, "EPOLLRDHUP", 0)


class WaitingRoom:
    """Sockets of untrusted connections waiting to become readable (Linux: epoll).

    :meth:`run` wakes at most ``per_batch`` waiters each time trio polls for I/O; the
    others stay ready in the room's epoll set, so they are woken in later batches, in
    the order they became ready."""

    def __init__(self, per_batch: int = TURNS) -> None:
        self.per_batch = per_batch
        self._epoll = select.epoll()
        self._waiting: dict[int, trio.lowlevel.Task] = {}

    async def wait_readable(self, sock: socket.socket | trio.socket.SocketType) -> None:
        """Until ``sock`` is readable (or hung up); cancellable."""
        fd = sock.fileno()
        task = trio.lowlevel.current_task()
        if fd in self._waiting:  # trio would say the same of two tasks on one socket
            raise trio.BusyResourceError("another task already waits for this socket")
        self._epoll.register(fd, _READY)
        self._waiting[fd] = task

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            self._leave(fd)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _leave(self, fd: int) -> trio.lowlevel.Task | None:
        task = self._waiting.pop(fd, None)
        with contextlib.suppress(OSError):  # closed meanwhile: epoll forgot it already
            self._epoll.unregister(fd)
        return task

    async def run(self) -> None:
        """Wake the waiters whose sockets are ready, ``per_batch`` per batch (forever)."""
        with self._epoll:
            while True:
                await trio.lowlevel.wait_readable(self._epoll.fileno())
                for fd, _ in self._epoll.poll(0, self.per_batch):
                    task = self._leave(fd)
                    if task is not None:
                        trio.lowlevel.reschedule(task)


class Turns:
    def __init__(self, slots: int = TURNS) -> None:
        self._limiter = trio.CapacityLimiter(slots)
        self.room = WaitingRoom(slots) if hasattr(select, "epoll") else None

    def ticket(self) -> Ticket:
        return Ticket(self._limiter, self.room)

    async def run(self) -> None:
        """The waiting room's work, for the listener's nursery (nothing without epoll)."""
        if self.room is not None:
            await self.room.run()


class Ticket:
    """One connection's right to turns, until :meth:`finish`."""

    __slots__ = ("_held", "_limiter", "_room")

    def __init__(self, limiter: trio.CapacityLimiter | None, room: WaitingRoom | None) -> None:
        self._limiter = limiter  # None: trusted, takes no turns
        self._room = room
        self._held = False

    @property
    def untrusted(self) -> bool:
        """Whether its holder works in turns (a check cheaper than :meth:`take`)."""
        return self._limiter is not None

    async def wait_readable(self, sock: trio.socket.SocketType) -> None:
        """Until ``sock`` has bytes: in the waiting room while untrusted."""
        if self._limiter is not None and self._room is not None:
            await self._room.wait_readable(sock)
        else:
            await trio.lowlevel.wait_readable(sock)

    async def take(self) -> None:
        """Before working on bytes that arrived: wait for a turn (none once trusted)."""
        if self._limiter is not None and not self._held:
            await self._limiter.acquire_on_behalf_of(self)
            self._held = True

    def give_back(self) -> None:
        """Before waiting for the peer."""
        if self._held:
            assert self._limiter is not None
            self._limiter.release_on_behalf_of(self)
            self._held = False

    def finish(self) -> None:
        """The connection is trusted (or ends): no more turns."""
        self.give_back()
        self._limiter = None


TRUSTED = Ticket(None, None)
