"""The AOI Server's working state: who is connected, which tokens exist, what is queued.

Everything lives in memory and is written through to the store before it counts: a
registration before ``registered`` is sent, a notification before its 201. At start-up the
hub is rebuilt from the store, so a crash loses nothing that was acknowledged.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from aoi.core.messages import Notify
from aoi.core.rfc3339 import rfc3339
from aoi.core.server_session import ServerSession

from .store import Registration, Store, StoredNotification

if TYPE_CHECKING:
    from aoi.net.websocket import WebSocket

PRIORITIES = ("high", "normal", "low")
WINDOW = 64  # notifications in flight per session before waiting for acks


def new_token() -> str:
    return secrets.token_urlsafe(24)  # 192 random bits


@dataclass(frozen=True, slots=True)
class StatusChange:
    """Notifications that reached a final state, for the store (written in batches)."""

    status: str  # delivered | expired
    ids: list[str]
    at: float  # wall-clock seconds since the epoch


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


class Hub:
    def __init__(self, store: Store, *, server_id: str, endpoint_base: str, max_apps: int) -> None:
        self.store = store
        self.server_id = server_id
        self.endpoint_base = endpoint_base.rstrip("/")
        self.max_apps = max_apps
        self.clients: dict[str, Client] = {}
        self.registrations: dict[str, Registration] = {}  # token -> active registration
        self.retired: set[str] = set()  # unregistered tokens: pushes get 410, not 404
        self.notifications: dict[str, StoredNotification] = {}  # pending, by id
        self.established = 0
        self._registering: dict[tuple[str, str], trio.Event] = {}  # being stored
        # What accept does with the link of a client that has a new notification: wake its
        # writer, or (the AOI-2 endpoint's) hand it over at once. Either way after storing.
        self.deliver: Callable[[Link], None] = Link.flush

    # --- start-up ------------------------------------------------------------------------

    async def restore(self) -> None:
        snapshot = await self.store.load()
        for reg in snapshot.registrations:
            if not reg.active:
                self.retired.add(reg.token)
                continue
            self.registrations[reg.token] = reg
            self._client(reg.client_id).tokens[reg.app_id] = reg.token
        for client_id, session_id in snapshot.sessions.items():
            self._client(client_id).session_id = session_id
        for n in snapshot.notifications:
            self._add_pending(n)

    def _client(self, client_id: str) -> Client:
        client = self.clients.get(client_id)
        if client is None:
            client = self.clients[client_id] = Client(client_id)
        return client

    # --- sessions ------------------------------------------------------------------------

    async def attach(
        self, link: Link, requested_session: str | None
    ) -> tuple[str, bool, Link | None]:
        """A client authenticated on ``link``. Returns its session id, whether it resumed,
        and the connection it replaces (the owner closes that one)."""
        client = self._client(link.client_id)
        resumed = requested_session is not None and requested_session == client.session_id
        if not resumed or client.session_id is None:
            session_id = secrets.token_urlsafe(18)
            await self.store.set_session(client.client_id, session_id)
            client.session_id = session_id  # only once stored: a failed write changes nothing
        previous, client.link = client.link, link
        if previous is None:
            self.established += 1
        client.requeue_all()
        return client.session_id, resumed, previous

    def detach(self, link: Link) -> None:
        client = self.clients.get(link.client_id)
        if client is not None and client.link is link:
            client.link = None
            self.established -= 1

    def owns_link(self, client_id: str) -> bool:
        client = self.clients.get(client_id)
        return client is not None and client.link is not None

    def links(self) -> Iterator[Link]:
        for client in self.clients.values():
            if client.link is not None:
                yield client.link

    # --- registrations -------------------------------------------------------------------

    def endpoint(self, token: str) -> str:
        return f"{self.endpoint_base}/v1/push/{token}"

    async def register(self, client_id: str, app_id: str, now: float) -> str | None:
        """The app's token (the same one again if already registered), or ``None`` when the
        client already has ``max_apps`` apps."""
        client = self._client(client_id)
        key = (client_id, app_id)
        while (pending := self._registering.get(key)) is not None:
            await pending.wait()  # a request racing this one (a resume, say) registers it
        token = client.tokens.get(app_id)
        if token is not None:
            return token
        if len(client.tokens) >= self.max_apps:
            return None
        token = new_token()
        registration = Registration(token=token, client_id=client_id, app_id=app_id, created_at=now)
        self._registering[key] = done = trio.Event()
        try:
            await self.store.add_registration(registration)
        finally:
            del self._registering[key]
            done.set()
        client.tokens[app_id] = token
        self.registrations[token] = registration
        return token

    async def unregister(self, client_id: str, token: str, now: float) -> bool:
        registration = self.registrations.get(token)
        if registration is None or registration.client_id != client_id:
            return False
        await self.store.deactivate_registration(token, now)
        if self.registrations.pop(token, None) is None:
            return True  # a request racing this one (a resume, say) unregistered it
        self.retired.add(token)
        client = self._client(client_id)
        client.tokens.pop(registration.app_id, None)
        for n in [n for n in client.pending.values() if n.token == token]:
            self._drop(n.id)
        return True

    # --- notifications -------------------------------------------------------------------

    def collapsible(self, token: str, collapse_key: str) -> list[str]:
        """Queued, never-sent notifications that a new one with ``collapse_key`` replaces."""
        registration = self.registrations[token]
        client = self._client(registration.client_id)
        in_flight = client.link.in_flight if client.link is not None else {}
        return [
            n.id
            for n in client.pending.values()
            if n.token == token and n.collapse_key == collapse_key and n.id not in in_flight
        ]

    async def accept(self, notification: StoredNotification, replaces: list[str]) -> None:
        """Store durably, then queue for delivery. Returns once the 201 may be sent."""
        await self.store.add_notification(notification, replaces)
        for old in replaces:
            self._drop(old)
        self._add_pending(notification)
        client = self.clients[notification.client_id]
        if client.link is not None:
            self.deliver(client.link)

    async def accept_many(self, batch: list[tuple[StoredNotification, list[str]]]) -> None:
        """:meth:`accept` for each of ``batch`` in turn, stored in one write: one commit for
        the lot, and nothing of it queued unless all of it is stored."""
        await self.store.add_notifications(batch)
        links: dict[str, Link] = {}
        for notification, replaces in batch:
            for old in replaces:
                self._drop(old)
            self._add_pending(notification)
            link = self.clients[notification.client_id].link
            if link is not None:
                links[notification.client_id] = link
        for link in links.values():
            self.deliver(link)

    def _add_pending(self, n: StoredNotification) -> None:
        client = self._client(n.client_id)
        client.pending[n.id] = n
        client.queue(n.id, n.priority)
        self.notifications[n.id] = n

    def _drop(self, notification_id: str) -> StoredNotification | None:
        n = self.notifications.pop(notification_id, None)
        if n is not None:
            self.clients[n.client_id].pending.pop(notification_id, None)
        return n

    def has_work(self, link: Link) -> bool:
        """Whether :meth:`pump` may find something to send on ``link`` now: queued ids (some
        may be stale) and room in the window. Cheap, for deciding whether to wake a writer."""
        client = self.clients.get(link.client_id)
        if client is None or client.unsent is None:
            return False
        high, normal, low = client.unsent
        return (bool(high) or bool(normal) or bool(low)) and len(link.in_flight) < WINDOW

    def pump(self, link: Link, now: float, wall: float) -> list[str]:
        """Hand ``link``'s session as many queued notifications as the window allows;
        returns the ids found expired on the way (the owner records them). ``now`` is the
        session clock, ``wall`` seconds since the epoch (the unit of TTLs)."""
        client = self.clients[link.client_id]
        session = link.session
        in_flight = link.in_flight
        expired: list[str] = []
        if len(in_flight) >= WINDOW:
            return expired
        for notification_id in client.next_unsent():
            n = client.pending.get(notification_id)
            if n is None or notification_id in in_flight:
                continue  # acked, cancelled or collapsed meanwhile
            if n.expires_at <= wall:
                self._drop(notification_id)
                expired.append(notification_id)
                continue
            notify = Notify(
                id=n.id, token=n.token, app_id=n.app_id, payload=n.payload,
                priority=n.priority, ttl_s=max(0, int(n.expires_at - wall)),
                created_at=rfc3339(n.created_at), collapse_key=n.collapse_key,
            )  # fmt: skip
            session.send(notify, now)
            in_flight[notification_id] = notify
            if len(in_flight) >= WINDOW:
                break
        return expired

    def acked(self, client_id: str, ids: tuple[str, ...]) -> list[StoredNotification]:
        """The client acked ``ids``; returns those that were pending (the rest are repeats)."""
        client = self.clients.get(client_id)
        if client is None:
            return []
        if client.link is not None:
            for notification_id in ids:
                client.link.in_flight.pop(notification_id, None)
        done = [n for i in ids if (n := client.pending.get(i)) is not None]
        for n in done:
            self._drop(n.id)
        return done

    def nacked(self, client_id: str, notification_id: str) -> None:
        """The app is not there: keep it queued, offer it again on the next connection."""

    def cancel(self, notification_id: str) -> StoredNotification | None:
        """Drop a queued notification that was never sent; ``None`` if that is too late."""
        n = self.notifications.get(notification_id)
        if n is None:
            return None
        link = self.clients[n.client_id].link
        if link is not None and notification_id in link.in_flight:
            return None
        return self._drop(notification_id)

    def expire(self, ids: list[str]) -> None:
        for notification_id in ids:
            self._drop(notification_id)
