"""The notification store's records, its errors, and the interface a backend implements.

The AOI Server keeps its working state (sessions, queues) in memory. The store is what
survives a crash and what answers delivery reports, so every write is durable when its call
returns: AOI-3 answers 201 only after ``add_notification`` returned, and "a crash after it
loses nothing" rests on that. Times are seconds since the epoch as floats; the server turns
them into RFC 3339 at the wire.

:class:`Store` is written against SQLite (:mod:`.sqlite`) but names nothing of it, so that a
second backend (Redis, say) can stand in without the server noticing; what it promises is
checked for every backend by one contract suite (``tests/store/test_store_contract.py``).
It has two ways to read the server's state back: :meth:`Store.load`, everything at once,
for a server that owns its store alone, and the reads of one client's registrations,
session and queue, for servers that share one store and take a client's state when it
connects to them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import trio


class Status(StrEnum):
    """A notification's status, as ``GET /v1/messages/{id}`` reports it."""

    QUEUED = "queued"
    DELIVERED = "delivered"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# A notification leaves ``queued`` once and for all: whichever of these comes first wins,
# so a late ack cannot turn a cancelled notification into a delivered one.
FINISHED = frozenset({Status.DELIVERED, Status.EXPIRED, Status.CANCELLED})


@dataclass(frozen=True, slots=True)
class Registration:
    """An app's registration on this server: what the token in an AOI-3 endpoint names."""

    token: str
    client_id: str
    app_id: str
    created_at: float
    active: bool = True


@dataclass(frozen=True, slots=True)
class StoredNotification:
    """A notification as pushed on AOI-3, with where it is on its way to the app.

    ``pushed_by`` is the server app's name: only that server app may read the report. It is
    what the delivery core (:class:`aoi.core.delivery.Delivery`) delivers.
    """

    id: str
    token: str
    client_id: str
    app_id: str
    payload: str
    priority: str  # high | normal | low
    ttl_s: int
    created_at: float
    expires_at: float
    collapse_key: str | None
    pushed_by: str
    status: str = Status.QUEUED
    status_at: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the server rebuilds its memory from at start-up."""

    registrations: tuple[Registration, ...]  # inactive ones too: their tokens answer 410
    notifications: tuple[StoredNotification, ...]  # queued ones, oldest first
    sessions: Mapping[str, str]  # client_id -> session_id


class StoreError(Exception):
    """A write or read did not happen. For a write, nothing of it was committed."""


class StoreConflict(StoreError):
    """The record already exists (a notification id or a token used twice)."""


class StoreGone(StoreError):
    """The token's registration was deactivated (by another server of the fleet, say):
    nothing was stored, and a push to it answers 410."""

    def __init__(self, token: str) -> None:
        super().__init__(f"token {token} is unregistered")
        self.token = token


class StoreClosed(StoreError):
    """The store is not running: its writer has not started yet, or has stopped."""


class Store(Protocol):
    """The notification store. Writes are durable on return; reads see every returned write.

    The owner starts :meth:`run` in a nursery (``await nursery.start(store.run)``) before
    calling anything else; calls made while it is not running raise :class:`StoreClosed`.
    A write whose caller is cancelled while waiting still happens (or fails) on its own:
    the caller just does not learn which, as with any database.
    """

    @property
    def commits(self) -> int:
        """Transactions committed so far (a metric)."""

    @property
    def ops_committed(self) -> int:
        """Writes committed so far; ``ops_committed / commits`` is the group-commit factor."""

    @property
    def ops_failed(self) -> int:
        """Writes that raised to their caller."""

    @property
    def failure(self) -> str | None:
        """Why writes fail for the disk's sake (full, read-only, I/O errors), from the first
        such failure until a write succeeds again; ``None`` while writes succeed."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the store, report readiness, write until cancelled, then commit what is
        queued and close."""

    async def add_registration(self, reg: Registration) -> None: ...

    async def deactivate_registration(self, token: str, at: float) -> None:
        """Also cancels the token's queued notifications, in the same transaction."""

    async def add_notification(self, n: StoredNotification, replaces: Sequence[str] = ()) -> None:
        """Store ``n``; the queued notifications in ``replaces`` (same ``collapse_key``) are
        cancelled in the same transaction, so no crash leaves the old and the new both queued."""

    async def add_notifications(
        self, batch: Sequence[tuple[StoredNotification, Sequence[str]]]
    ) -> None:
        """Store each notification of ``batch`` with what it replaces, as
        :meth:`add_notification` would one after the other, in one transaction: all or none.
        A notification may replace one before it in the same batch."""

    async def set_status(self, ids: Sequence[str], status: str, at: float) -> None:
        """Finish queued notifications (``delivered``, ``expired`` or ``cancelled``); ids
        already finished or unknown are left alone."""

    async def set_session(self, client_id: str, session_id: str) -> None: ...

    def backlog(self) -> int:
        """Writes accepted and not yet committed (overload control reads it)."""

    async def probe(self) -> None:
        """A write that changes nothing, to learn whether writes succeed again (it clears
        :attr:`failure` when it commits); raises :class:`StoreError` like any write."""

    async def load(self) -> Snapshot: ...

    async def get_notification(self, id: str) -> StoredNotification | None: ...

    async def get_registration(self, token: str) -> Registration | None:
        """The registration ``token`` names, active or not (an inactive one answers 410)."""

    async def registrations_of(self, client_id: str) -> tuple[Registration, ...]:
        """The client's active registrations, oldest first."""

    async def get_session(self, client_id: str) -> str | None:
        """The client's session id, which ``hello.session`` resumes."""

    async def queued_for(self, client_id: str) -> tuple[StoredNotification, ...]:
        """The client's queued notifications in the order of acceptance (as :meth:`load`
        has them): what its delivery starts from when it connects."""

    async def expire(self, now: float) -> list[str]:
        """Mark queued notifications whose ``expires_at`` is before ``now`` expired; their ids."""

    async def purge(self, before: float) -> int:
        """Delete finished notifications whose ``status_at`` is before ``before``; how many."""
