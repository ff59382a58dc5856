"""One connection of a client (:class:`Link`) and a client's state on this server
(:class:`Client`), which outlives its connections: its session, its tokens, and the
delivery of its notifications (:class:`aoi.core.delivery.Delivery`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from aoi.core.delivery import Delivery
from aoi.core.server_session import ServerSession

from .store import StoredNotification

if TYPE_CHECKING:
    from aoi.net.websocket import WebSocket

_WOKEN: Any = object()  # Link._writer of a writer that flush() woke and that has not run yet


@dataclass(slots=True, eq=False)
class Link:
    """One connection: the session core and a way to wake its writer. What it has in flight
    is the client's :class:`~aoi.core.delivery.Delivery`'s to know.

    The writer waits in :meth:`wait_flush`; :meth:`flush` wakes it, or, when it is busy
    writing, makes its next wait return at once. Calls in a row wake it once. (Cheaper than a
    new ``trio.Event`` per wake, and smaller: one idle session holds no event at all.)"""

    session: ServerSession
    client_id: str
    claim: str | None = None  # in a fleet: this session's claim on the client
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


@dataclass(slots=True, eq=False)
class Client:
    """A client's state on this server; it outlives its connections.

    ``delivery`` holds its pending notifications and says what goes out on ``link``. It is
    made with the first of them and dropped when the client goes offline with none pending:
    an idle client that had none holds none."""

    client_id: str
    session_id: str | None = None
    tokens: dict[str, str] = field(default_factory=dict)  # app_id -> token
    delivery: Delivery[StoredNotification] | None = None
    link: Link | None = None
    attaching: int = 0  # connections between authentication and attach's return
