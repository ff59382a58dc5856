"""Delivery to one AOI Client: what to send next, and when a notification is finished.

The owner keeps one :class:`Delivery` per client and feeds it what happens, each with the
wall time (seconds since the epoch, the unit of ``created_at`` and TTLs): a notification was
stored (:meth:`~Delivery.push`), a connection carries the client's session or lost it, the
client acked or nacked, an app registered again, a server app cancelled, a token was
unregistered, time passed (:meth:`~Delivery.tick` at :meth:`~Delivery.deadline`). Each call
returns what the owner must do: the ``notify`` messages to send on the connection, in order,
and the notifications that reached their final status (:class:`Delivered`,
:class:`Expired`, :class:`Cancelled`, each for all those one input finished alike), to
record. Nothing here does I/O or reads a clock.

The rules (docs/protocol.md 2.8, 3.5, 3.6), each notification moving through
:data:`TRANSITIONS`:

- At least once on the wire: a notification stays pending until it is acked, expires or is
  cancelled. What is in flight when the connection is lost, or was nacked, is sent again on
  the next connection, ahead of what was never sent (acceptance order within a priority).
- At most ``window`` notifications are in flight (sent, neither acked nor nacked) on a
  connection; none is sent twice on one connection.
- Order: ``high`` before queued ``normal`` before ``low``; within a priority, in order of
  acceptance.
- TTL: a notification is never sent once ``created_at + ttl_s`` is reached (``now >=
  expires_at``); from then on it is ``expired``, in flight or not, and an ack that comes
  later is ignored. ``ttl_s: 0`` needs no rule of its own: it is expired at acceptance,
  never sent. ``notify.ttl_s`` is the TTL as pushed, so that the AOI Client computes the
  same expiry.
- Ack: the ids pending for this client become ``delivered`` (even one waiting to be sent
  again: the client had it from an earlier connection); unknown or finished ids are ignored.
- Nack: the notification is set aside, outside the window, until its app registers again
  or the next connection; it stays pending until its TTL.
- Cancel (``DELETE``), collapse and unregistration finish a pending notification as
  ``cancelled``, in flight or not: what the status says ``queued`` may be cancelled. One
  already on the wire is not retracted (the client may still hand it to its app), but it is
  never sent again, and its ack is ignored. Collapse: a new notification with the
  ``collapse_key`` of a pending one for the same token replaces it, so at most one per key
  is pending.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Generic, Protocol, TypeAlias, TypeVar

from .messages import Notify
from .rfc3339 import rfc3339

WINDOW = 64


class Deliverable(Protocol):
    """What the owner's record of a notification must offer (the store's record does)."""

    @property
    def id(self) -> str: ...
    @property
    def token(self) -> str: ...
    @property
    def app_id(self) -> str: ...
    @property
    def payload(self) -> str: ...
    @property
    def priority(self) -> str: ...  # high | normal | low
    @property
    def ttl_s(self) -> int: ...
    @property
    def created_at(self) -> float: ...
    @property
    def expires_at(self) -> float: ...  # created_at + ttl_s
    @property
    def collapse_key(self) -> str | None: ...


N = TypeVar("N", bound=Deliverable)


class Stage(Enum):
    """Where one notification is on its way to the client."""

    QUEUED = "queued"  # waiting for room in the window (or for a connection)
    IN_FLIGHT = "in_flight"  # sent on the current connection, neither acked nor nacked
    NACKED = "nacked"  # set aside until its app registers again or the next connection
    DELIVERED = "delivered"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    __hash__ = object.__hash__  # members are singletons; Enum's own hash runs Python code


class Input(Enum):
    SEND = "send"
    ACK = "ack"
    NACK = "nack"
    CONNECTION_LOST = "connection_lost"  # or replaced by a new connection
    APP_REGISTERED = "app_registered"
    CANCEL = "cancel"  # DELETE, collapse, unregistration
    EXPIRE = "expire"

    __hash__ = object.__hash__


PENDING = (Stage.QUEUED, Stage.IN_FLIGHT, Stage.NACKED)

# (stage, input) -> next stage. Everything not listed leaves a notification as it is: a
# finished one is forgotten, so what comes for it later (a late ack) changes nothing.
TRANSITIONS: Mapping[tuple[Stage, Input], Stage] = {
    (Stage.QUEUED, Input.SEND): Stage.IN_FLIGHT,
    (Stage.QUEUED, Input.NACK): Stage.NACKED,
    (Stage.IN_FLIGHT, Input.NACK): Stage.NACKED,
    (Stage.IN_FLIGHT, Input.CONNECTION_LOST): Stage.QUEUED,
    (Stage.NACKED, Input.CONNECTION_LOST): Stage.QUEUED,
    (Stage.NACKED, Input.APP_REGISTERED): Stage.QUEUED,
    **{(stage, Input.ACK): Stage.DELIVERED for stage in PENDING},
    **{(stage, Input.CANCEL): Stage.CANCELLED for stage in PENDING},
    **{(stage, Input.EXPIRE): Stage.EXPIRED for stage in PENDING},
}

# The table by input, for the machinery below: one lookup per move.
_AFTER = {what: {s: a for (s, w), a in TRANSITIONS.items() if w is what} for what in Input}
_QUEUED, _IN_FLIGHT = Stage.QUEUED, Stage.IN_FLIGHT
_SENT = TRANSITIONS[(_QUEUED, Input.SEND)]


class CancelReason(StrEnum):
    REQUESTED = "requested"  # DELETE /v1/messages/{id}
    REPLACED = "replaced"  # a newer notification with its collapse_key
    UNREGISTERED = "unregistered"  # its token was unregistered


# One status event for all that one input finished alike: an ack of 64 ids, one Delivered.


@dataclass(frozen=True, slots=True)
class Delivered(Generic[N]):
    notifications: tuple[N, ...]
    at: float


@dataclass(frozen=True, slots=True)
class Expired(Generic[N]):
    notifications: tuple[N, ...]
    at: float


@dataclass(frozen=True, slots=True)
class Cancelled(Generic[N]):
    notifications: tuple[N, ...]
    at: float
    reason: CancelReason


Event: TypeAlias = Notify | Delivered[N] | Expired[N] | Cancelled[N]

_LANES = {"high": 0, "normal": 1, "low": 2}


class _Entry(Generic[N]):
    __slots__ = ("n", "seq", "stage")

    def __init__(self, n: N, seq: int) -> None:
        self.n = n
        self.seq = seq  # acceptance order, and the expiry heap's tie-break
        self.stage = _QUEUED


class Delivery(Generic[N]):
    """The pending notifications of one AOI Client and the connection carrying its session.

    Every input takes ``now``, the wall time, and first expires what has passed it, so what
    happens depends on the times given, not on how often :meth:`tick` was called.
    """

    __slots__ = (
        "_by_key", "_connection", "_expiry", "_in_flight", "_lanes", "_pending", "_seq", "window",
    )  # fmt: skip

    def __init__(self, *, window: int = WINDOW) -> None:
        if window < 1:
            raise ValueError("the window must hold at least one notification")
        self.window = window
        self._pending: dict[str, _Entry[N]] = {}  # acceptance order
        self._by_key: dict[tuple[str, str], _Entry[N]] = {}  # (token, collapse_key)
        self._lanes: tuple[deque[_Entry[N]], ...] = (deque(), deque(), deque())
        self._expiry: list[tuple[float, int, _Entry[N]]] = []  # a heap, finished ones left in
        self._in_flight = 0
        self._connection: object | None = None
        self._seq = 0

    # --- inputs --------------------------------------------------------------------------

    def push(self, n: N, now: float) -> list[Event[N]]:
        """``n`` was stored (its 201 may go): queue it, replacing a pending one with its
        ``collapse_key``, and send what the window allows."""
        if n.id in self._pending:
            raise ValueError(f"notification {n.id} is already pending")
        events = self._expire_due(now)
        if n.collapse_key is not None:
            older = self._by_key.get((n.token, n.collapse_key))
            if older is not None:
                self._finish(older, Input.CANCEL)
                events.append(Cancelled((older.n,), now, CancelReason.REPLACED))
        if n.expires_at <= now:
            events.append(Expired((n,), now))
            self._fill(events)  # the room that the one it replaced, or what expired, made
            return events
        entry = _Entry(n, self._seq)
        self._seq += 1
        self._pending[n.id] = entry
        if n.collapse_key is not None:
            self._by_key[(n.token, n.collapse_key)] = entry
        heapq.heappush(self._expiry, (n.expires_at, entry.seq, entry))
        self._lanes[_LANES[n.priority]].append(entry)
        self._fill(events)
        return events

    def connected(self, connection: object, now: float) -> list[Event[N]]:
        """``connection`` now carries the client's session (new or resumed); one it replaces
        is lost. Everything pending goes out, in order, as the window allows."""
        if self._connection is not None:
            self._requeue()
        self._connection = connection
        events = self._expire_due(now)
        self._fill(events)
        return events

    def disconnected(self, connection: object) -> None:
        """``connection`` is gone; what it had in flight will go out on the next one. A
        connection already replaced changes nothing."""
        if connection is self._connection and connection is not None:
            self._connection = None
            self._requeue()

    def ack(self, ids: Iterable[str], now: float) -> list[Event[N]]:
        """The client acked ``ids``: those pending are delivered, the rest ignored."""
        events = self._expire_due(now)
        pending = self._pending
        delivered = []
        for notification_id in ids:
            entry = pending.get(notification_id)
            if entry is not None:
                self._finish(entry, Input.ACK)
                delivered.append(entry.n)
        if delivered:
            events.append(Delivered(tuple(delivered), now))
        self._fill(events)
        return events

    def nack(self, notification_id: str, now: float) -> list[Event[N]]:
        """The client could not hand ``notification_id`` to its app: set it aside."""
        events = self._expire_due(now)
        entry = self._pending.get(notification_id)
        if entry is not None:
            self._move(entry, Input.NACK)
        self._fill(events)  # room it made, or what expired made
        return events

    def app_registered(self, app_id: str, now: float) -> list[Event[N]]:
        """The client registered ``app_id`` (again): what it nacked for that app goes out."""
        events = self._expire_due(now)
        moved = False
        for entry in self._pending.values():
            if entry.stage is Stage.NACKED and entry.n.app_id == app_id:
                self._move(entry, Input.APP_REGISTERED)
                moved = True
        if moved:
            self._sort_lanes()
        self._fill(events)
        return events

    def cancel(self, notification_id: str, now: float) -> list[Event[N]]:
        """A server app cancelled ``notification_id``: :class:`Cancelled` if it was pending
        (an empty answer otherwise: it is finished, or not this client's)."""
        events = self._expire_due(now)
        entry = self._pending.get(notification_id)
        if entry is not None:
            self._finish(entry, Input.CANCEL)
            events.append(Cancelled((entry.n,), now, CancelReason.REQUESTED))
        self._fill(events)
        return events

    def unregistered(self, token: str, now: float) -> list[Event[N]]:
        """``token`` was unregistered: its pending notifications are cancelled."""
        events = self._expire_due(now)
        of_token = [e for e in self._pending.values() if e.n.token == token]
        for entry in of_token:
            self._finish(entry, Input.CANCEL)
        if of_token:
            events.append(Cancelled(tuple(e.n for e in of_token), now, CancelReason.UNREGISTERED))
        self._fill(events)
        return events

    def tick(self, now: float) -> list[Event[N]]:
        """Time passed: expire what is due, and fill the room that made in the window."""
        events = self._expire_due(now)
        self._fill(events)
        return events

    # --- queries -------------------------------------------------------------------------

    def deadline(self) -> float | None:
        """The wall time from which :meth:`tick` has something to do, or ``None``."""
        expiry = self._expiry
        while expiry and expiry[0][2].stage not in PENDING:
            heapq.heappop(expiry)
        return expiry[0][0] if expiry else None

    def stage(self, notification_id: str) -> Stage | None:
        """Where a pending notification is; ``None`` for one finished or never pushed."""
        entry = self._pending.get(notification_id)
        return None if entry is None else entry.stage

    def collapsible(self, token: str, collapse_key: str) -> str | None:
        """The pending notification that a push with ``collapse_key`` to ``token`` replaces."""
        entry = self._by_key.get((token, collapse_key))
        return None if entry is None else entry.n.id

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def __len__(self) -> int:
        """Pending notifications (queued, in flight or set aside)."""
        return len(self._pending)

    # --- the machinery -------------------------------------------------------------------

    def _move(self, entry: _Entry[N], what: Input) -> None:
        before = entry.stage
        after = _AFTER[what].get(before)
        if after is None:
            return
        if before is _IN_FLIGHT:
            self._in_flight -= 1
        elif after is _IN_FLIGHT:
            self._in_flight += 1
        entry.stage = after

    def _finish(self, entry: _Entry[N], what: Input) -> None:
        """Move ``entry`` to a final stage and forget it (the lanes and the heap skip it)."""
        self._move(entry, what)
        n = entry.n
        del self._pending[n.id]
        if n.collapse_key is not None and self._by_key.get((n.token, n.collapse_key)) is entry:
            del self._by_key[(n.token, n.collapse_key)]
        if len(self._expiry) > 2 * len(self._pending) + 64:
            self._expiry = [(e.n.expires_at, e.seq, e) for e in self._pending.values()]
            heapq.heapify(self._expiry)

    def _expire_due(self, now: float) -> list[Event[N]]:
        expired = []
        # self._expiry each time round: finishing an entry may compact the heap.
        while self._expiry and self._expiry[0][0] <= now:
            entry = heapq.heappop(self._expiry)[2]
            if entry.stage in PENDING:
                self._finish(entry, Input.EXPIRE)
                expired.append(entry.n)
        return [Expired(tuple(expired), now)] if expired else []

    def _requeue(self) -> None:
        for entry in self._pending.values():
            self._move(entry, Input.CONNECTION_LOST)
        self._sort_lanes()

    def _sort_lanes(self) -> None:
        """Rebuild the lanes from what is queued, in acceptance order (the pending dict's)."""
        self._lanes = (deque(), deque(), deque())
        for entry in self._pending.values():
            if entry.stage is Stage.QUEUED:
                self._lanes[_LANES[entry.n.priority]].append(entry)

    def _fill(self, events: list[Event[N]]) -> None:
        """Send from the lanes, highest priority first, while the window has room. Called
        after :meth:`_expire_due` with the same time: nothing here has passed its TTL."""
        if self._connection is None:
            return
        window = self.window
        for lane in self._lanes:
            while lane and self._in_flight < window:
                entry = lane.popleft()
                if entry.stage is not _QUEUED:
                    continue  # finished or set aside since it was queued
                entry.stage = _SENT
                self._in_flight += 1
                n = entry.n
                events.append(
                    Notify(
                        id=n.id, token=n.token, app_id=n.app_id, payload=n.payload,
                        priority=n.priority, ttl_s=n.ttl_s, created_at=rfc3339(n.created_at),
                        collapse_key=n.collapse_key,
                    )
                )  # fmt: skip
            if self._in_flight >= window:
                return
