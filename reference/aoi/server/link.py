"""One connection of a client (:class:`Link`) and a client's state on this server
(:class:`Client`), which outlives its connections."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from aoi.core.messages import Notify
from aoi.core.server_session import ServerSession

from .store import StoredNotification

if TYPE_CHECKING:
    from aoi.net.websocket import WebSocket

    from .hub import Hub

PRIORITIES = ("high", "normal", "low")

_WOKEN: Any = object()  # Link._writer of a writer that flush() woke and that has not run yet


@dataclass(slots=True, eq=False)
class Link:
    """One connection: the session core, a way to wake its writer, what it has in flight
    (sent, neither acked nor nacked) and what its client nacked (the app was not there;
    offered again when that app registers again).

    The writer waits in :meth:`wait_flush`; :meth:`flush` wakes it, or, when it is busy
    writing, makes its next wait return at once. Calls in a row wake it once. (Cheaper than a
    new ``trio.Event`` per wake, and smaller: one idle session holds no event at all.)"""

    session: ServerSession
    client_id: str
    parked: set[str] | None = None
    claim: str | None = None  # in a fleet: this session's claim on the client
    # The in-flight window; aoi.core.delivery holds it once the hub delivers through it.
    in_flight: dict[str, Notify] = field(default_factory=dict, repr=False)
    ws: WebSocket | None = field(default=None, repr=False)
    _writer: trio.lowlevel.Task | None = field(default=None, repr=False)
    _flushed: bool = field(default=False, repr=False)

    @property
    def writer_parked(self) -> bool:
        """The writer waits in :meth:`wait_flush`: it holds no frames and is not writing."""
        return self._writer is not None and self._writer is not _WOKEN

    def flush(self) -> None:
        writer = self._writer
        if writer is _WOKEN:
            return  # woken already, not yet running: it will see whatever this flush is for
        if writer is not None:
            self._writer = _WOKEN
            trio.lowlevel.reschedule(writer)
        else:
            self._flushed = True

    async def wait_flush(self) -> None:
        """Until :meth:`flush` was called (since the last return); one task waits at a time.

        A flush that came while the writer was busy returns at once, without a checkpoint:
        the writer then writes (a checkpoint) or comes back here and parks."""
        if self._flushed:
            self._flushed = False
            return
        if self._writer is not None:
            raise RuntimeError("another task already waits for this link's flush")
        self._writer = trio.lowlevel.current_task()
        # A bound method, not a closure: a parked writer holds a third of the bytes.
        await trio.lowlevel.wait_task_rescheduled(self._abort_wait)
        self._writer = None  # was _WOKEN: flushes from now on are for the next round

    def _abort_wait(self, _: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        self._writer = None
        return trio.lowlevel.Abort.SUCCEEDED

    def park(self, notification_id: str) -> None:
        if self.in_flight.pop(notification_id, None) is not None:
            if self.parked is None:
                self.parked = set()
            self.parked.add(notification_id)

    def unpark(self, app_id: str, hub: Hub) -> None:
        if not self.parked:
            return
        client = hub.clients[self.client_id]
        for notification_id in list(self.parked):
            n = client.pending.get(notification_id)
            if n is None:
                self.parked.discard(notification_id)
            elif n.app_id == app_id:
                self.parked.discard(notification_id)
                client.queue(n.id, n.priority)


@dataclass(slots=True, eq=False)
class Client:
    """A client's state on this server; it outlives its connections."""

    client_id: str
    session_id: str | None = None
    tokens: dict[str, str] = field(default_factory=dict)  # app_id -> token
    pending: dict[str, StoredNotification] = field(default_factory=dict)  # not acked yet
    unsent: tuple[deque[str], deque[str], deque[str]] | None = None  # ids by priority
    link: Link | None = None
    attaching: int = 0  # connections between authentication and attach's return

    def queue(self, notification_id: str, priority: str) -> None:
        if self.unsent is None:
            self.unsent = (deque(), deque(), deque())
        self.unsent[PRIORITIES.index(priority)].append(notification_id)

    def next_unsent(self) -> Iterator[str]:
        if self.unsent is None:
            return
        for lane in self.unsent:
            while lane:
                yield lane.popleft()

    def requeue_all(self) -> None:
        """A new connection: everything not acked goes out again (at least once)."""
        self.unsent = None
        for n in sorted(
            self.pending.values(), key=lambda n: (PRIORITIES.index(n.priority), n.created_at)
        ):
            self.queue(n.id, n.priority)
