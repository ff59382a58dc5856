"""The AOI Server's working state: who is connected, which tokens exist, what is queued.

Everything lives in memory and is written through to the store before it counts: a
registration before ``registered`` is sent, a notification before its 201. At start-up the
hub is rebuilt from the store, so a crash loses nothing that was acknowledged.

What is pending for a client, and what goes out next, is its
:class:`~aoi.core.delivery.Delivery`'s to say (``Client.delivery``): the hub feeds it what
happens (a notification stored, a connection welcomed or gone, an ack, a nack, a register,
a cancel, an unregistration, time) and carries out the events it returns, the same way for
all: a ``notify`` goes to the connection's session, and a notification that reached its
final status goes, as a :class:`StatusChange`, to :attr:`Hub.record`, the server's one way
of writing statuses to the store (in batches; a cancel waits for its :class:`Receipt`).

A node of a fleet (:mod:`.fleet`) shares its store with the other nodes: its memory holds
only the clients connected to it, taken from the store when they connect, and registrations
it has looked up; what it accepts for a client held elsewhere goes to that node.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from aoi.core.delivery import Cancelled, Delivered, Delivery, Event, Expired
from aoi.core.messages import Notify
from aoi.core.session import State

from .clock import Clock
from .link import Client, Link
from .store import Registration, Status, Store, StoredNotification, StoreError, StoreGone
from .store.routes import new_token

if TYPE_CHECKING:
    from .fleet import Fleet

FINISHED_KEPT = 4096  # ids a fleet node remembers as finished, against late forwards


class Receipt:
    """Whoever waits for a :class:`StatusChange` to be durable (a cancel's answer) waits
    here: :meth:`wait` returns once the store has it, or raises the store's error."""

    __slots__ = ("_done", "_error")

    def __init__(self) -> None:
        self._done = trio.Event()
        self._error: StoreError | None = None

    def settle(self, error: StoreError | None = None) -> None:
        if not self._done.is_set():
            self._error = error
            self._done.set()

    async def wait(self) -> None:
        await self._done.wait()
        if self._error is not None:
            raise self._error


@dataclass(frozen=True, slots=True)
class StatusChange:
    """Notifications that reached a final status, for the store (written in batches)."""

    status: Status  # delivered | expired | cancelled
    notifications: tuple[StoredNotification, ...]
    at: float  # wall-clock seconds since the epoch
    receipt: Receipt | None = None


def _ignore(change: StatusChange) -> None:
    pass


_RANK = {"high": 0, "normal": 1, "low": 2}
_STATUS: dict[type, Status] = {
    Delivered: Status.DELIVERED, Expired: Status.EXPIRED, Cancelled: Status.CANCELLED,
}  # fmt: skip
_ESTABLISHED = State.ESTABLISHED


def _priority(n: StoredNotification) -> int:
    return _RANK[n.priority]


def _by_priority(item: tuple[StoredNotification, list[str]]) -> int:
    return _RANK[item[0].priority]


class Hub:
    def __init__(self, store: Store, *, server_id: str, endpoint_base: str, max_apps: int) -> None:
        self.store = store
        self.server_id = server_id
        self.endpoint_base = endpoint_base.rstrip("/")
        self.max_apps = max_apps
        self.clients: dict[str, Client] = {}
        self.registrations: dict[str, Registration] = {}  # token -> active registration
        self.retired: set[str] = set()  # unregistered tokens: pushes get 410, not 404
        self.established = 0
        self._registering: dict[tuple[str, str], trio.Event] = {}  # being stored
        self._unwritten: set[str] = set()  # cancelled while the store failed: not durable yet
        self.fleet: Fleet | None = None
        self.finished: OrderedDict[str, None] = OrderedDict()  # in a fleet: acked, expired...
        # What accept does with the link of a client that has a new notification: wake its
        # writer, or (the AOI-2 endpoint's) hand it over at once. Either way after storing.
        self.deliver: Callable[[Link], None] = Link.flush
        # Where final statuses go: the server's status writer (and its metrics).
        self.record: Callable[[StatusChange], None] = _ignore
        self.clock = Clock()  # the wall time for the deliveries, trio's for the sessions

    # --- start-up ------------------------------------------------------------------------

    async def restore(self) -> None:
        if self.fleet is not None:
            return  # the fleet's state is taken client by client, as they connect
        snapshot = await self.store.load()
        for reg in snapshot.registrations:
            if not reg.active:
                self.retired.add(reg.token)
                continue
            self.registrations[reg.token] = reg
            self._client(reg.client_id).tokens[reg.app_id] = reg.token
        for client_id, session_id in snapshot.sessions.items():
            self._client(client_id).session_id = session_id
        wall = self.clock.wall()
        for n in snapshot.notifications:
            self.add_pending(n, wall)  # no connection yet: what expired meanwhile is recorded

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
        client.attaching += 1  # a fleet node keeps it in memory meanwhile (forget)
        try:
            if self.fleet is not None:
                await self.fleet.adopt(client, link)
            resumed = requested_session is not None and requested_session == client.session_id
            if not resumed or client.session_id is None:
                session_id = secrets.token_urlsafe(18)
                await self.store.set_session(client.client_id, session_id)
                client.session_id = session_id  # only once stored: a failure changes nothing
        except BaseException:
            client.attaching -= 1
            if self.fleet is not None:
                self.forget(client)  # its state is the store's again
            raise
        client.attaching -= 1
        previous, client.link = client.link, link
        if previous is None:
            self.established += 1
        elif client.delivery is not None:
            client.delivery.disconnected(previous)  # its in flight goes out again
        return client.session_id, resumed, previous

    def welcomed(self, link: Link) -> bool:
        """``link``'s session was welcomed: everything pending for its client goes out on it
        (at least once), as the window allows. Whether there is something to send."""
        client = self.clients.get(link.client_id)
        if client is None or client.link is not link or client.delivery is None:
            return False
        return self._carry(client, client.delivery.connected(link, self.clock.wall()))

    def detach(self, link: Link) -> None:
        client = self.clients.get(link.client_id)
        if client is not None and client.link is link:
            client.link = None
            self.established -= 1
            delivery = client.delivery
            if delivery is not None:
                delivery.disconnected(link)
                if not delivery:
                    client.delivery = None  # offline with nothing pending: none kept for it
            if self.fleet is not None:
                self.fleet.leave(client, link)

    def forget(self, client: Client) -> None:
        """Drop a client's state from memory (a fleet node whose session of it ended)."""
        if client.link is None and not client.attaching:
            del self.clients[client.client_id]

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
        token = new_token(client_id)
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
        """Withdraw ``token``; its pending notifications are cancelled. ``False`` if it is
        not one of the client's. What that made room for is in the session's outgoing."""
        registration = self.registrations.get(token)
        if registration is None or registration.client_id != client_id:
            return False
        await self.store.deactivate_registration(token, now)
        if self.registrations.pop(token, None) is None:
            return True  # a request racing this one (a resume, say) unregistered it
        self.retired.add(token)
        client = self._client(client_id)
        client.tokens.pop(registration.app_id, None)
        if client.delivery is not None:
            self._carry(client, client.delivery.unregistered(token, now))
        return True

    # --- notifications -------------------------------------------------------------------

    async def know(self, token: str) -> None:
        """Make sure a registration made by another node of the fleet is known here."""
        if self.fleet is None or token in self.registrations or token in self.retired:
            return
        registration = await self.store.get_registration(token)
        if registration is not None:
            if registration.active:
                self.registrations[token] = registration
            else:
                self.retired.add(token)

    def retire(self, token: str) -> None:
        """Another node unregistered ``token`` (the store said so)."""
        self.registrations.pop(token, None)
        self.retired.add(token)

    def collapsible(self, token: str, collapse_key: str) -> list[str]:
        """The pending notification (queued, in flight or nacked) that a new one with
        ``collapse_key`` replaces, as a list for the store (in a fleet, that of a client held
        elsewhere is found by the store)."""
        registration = self.registrations[token]
        client = self.clients.get(registration.client_id)
        delivery = None if client is None else client.delivery
        older = None if delivery is None else delivery.collapsible(token, collapse_key)
        return [] if older is None else [older]

    async def accept(self, notification: StoredNotification, replaces: list[str]) -> None:
        """Store durably, then queue for delivery. Returns once the 201 may be sent."""
        if self.fleet is not None:
            return await self.accept_many([(notification, replaces)])
        await self.store.add_notification(notification, replaces)
        if self.add_pending(notification, self.clock.wall()):
            self.deliver(self.clients[notification.client_id].link)  # type: ignore[arg-type]

    async def accept_many(self, batch: list[tuple[StoredNotification, list[str]]]) -> None:
        """:meth:`accept` for each of ``batch`` in turn, stored in one write: one commit for
        the lot, and nothing of it queued unless all of it is stored."""
        if self.fleet is not None:
            try:
                return await self.fleet.accept(batch)
            except StoreGone as gone:
                self.retire(gone.token)
                raise
        await self.store.add_notifications(batch)
        # One replaced by a later one of the same batch is stored cancelled: never queued.
        replaced = {old for _, replaces in batch for old in replaces}
        wall = self.clock.wall()
        links: dict[str, Link] = {}
        # Accepted together, so queued together: higher priorities first (a stable sort
        # keeps the batch's order within each), as they would leave a queue holding them.
        for notification, _ in sorted(batch, key=_by_priority):
            if notification.id not in replaced and self.add_pending(notification, wall):
                links[notification.client_id] = self.clients[notification.client_id].link  # type: ignore[assignment]
        for link in links.values():
            self.deliver(link)

    def add_pending(self, n: StoredNotification, wall: float) -> bool:
        """Hand ``n``, stored and queued, to its client's delivery (what it replaces under
        its ``collapse_key`` is cancelled). Whether that gave the client's connection
        something to send: the caller then calls :attr:`deliver` with it."""
        client = self._client(n.client_id)
        delivery = client.delivery
        if delivery is None:
            delivery = self._delivery(client, wall)
        return self._carry(client, delivery.push(n, wall))

    def arrived(self, notifications: list[StoredNotification], cancelled: list[str]) -> None:
        """Another node (or this one) accepted ``notifications`` for clients held here, and
        cancelled ``cancelled`` as replaced by them."""
        wall = self.clock.wall()
        gone = set(cancelled)
        if gone:
            for client_id in {n.client_id for n in notifications}:
                for old in gone:
                    self.cancelled(old, client_id, wall)
        links: dict[str, Link] = {}
        for n in sorted(notifications, key=_priority):  # as in accept_many
            client = self.clients.get(n.client_id)
            if client is None or (client.link is None and not client.attaching):
                continue  # its session ended meanwhile: the store's queue has it
            if n.id in gone:
                continue  # replaced by a later one of its batch: stored cancelled
            if not self.knows(client, n.id) and self.add_pending(n, wall):
                links[n.client_id] = client.link  # type: ignore[assignment]
        for link in links.values():
            self.deliver(link)

    def knows(self, client: Client, notification_id: str) -> bool:
        """Whether ``notification_id`` is pending for ``client`` here, or (in a fleet)
        finished here lately: a forward or a queue read that brings it again is late."""
        delivery = client.delivery
        return (
            delivery is not None and delivery.stage(notification_id) is not None
        ) or notification_id in self.finished

    def cancelled(self, notification_id: str, client_id: str | None, wall: float) -> None:
        """The store cancelled it (another node did): it is not sent again. Without
        ``client_id`` (a node that does not name it), every client held here is asked."""
        if client_id is None:
            clients = list(self.clients.values())
        else:
            client = self.clients.get(client_id)
            clients = [] if client is None else [client]
        for client in clients:
            delivery = client.delivery
            if delivery is not None and delivery.stage(notification_id) is not None:
                if self._carry(client, delivery.cancel(notification_id, wall)):
                    self.deliver(client.link)  # type: ignore[arg-type]
                return

    def acked(self, client_id: str, ids: tuple[str, ...]) -> bool:
        """The client acked ``ids``: those pending are delivered, the rest are repeats.
        Whether that made room for more on its connection (the caller flushes)."""
        client = self.clients.get(client_id)
        if client is None or client.delivery is None:
            return False
        return self._carry(client, client.delivery.ack(ids, self.clock.wall()))

    def nacked(self, client_id: str, notification_id: str) -> bool:
        """The app is not there: keep it pending, and offer it again when the app registers
        again or on the next connection. Whether that made room for more (as :meth:`acked`)."""
        client = self.clients.get(client_id)
        if client is None or client.delivery is None:
            return False
        return self._carry(client, client.delivery.nack(notification_id, self.clock.wall()))

    def app_registered(self, client_id: str, app_id: str) -> bool:
        """The client registered ``app_id`` (again): what it nacked for that app goes out
        again. Whether there is something to send (as :meth:`acked`)."""
        client = self.clients.get(client_id)
        if client is None or client.delivery is None:
            return False
        return self._carry(client, client.delivery.app_registered(app_id, self.clock.wall()))

    async def cancel(self, n: StoredNotification, now: float) -> bool:
        """Cancel ``n``, queued in the store (sent and not acked yet, maybe): ``True`` once
        its ``cancelled`` is durable, ``False`` if it finished otherwise first. When the
        store fails, :class:`StoreError`: the cancel holds all the same and its status is
        written once the store takes it; a cancel tried again waits for that again."""
        receipt = Receipt()
        client = self.clients.get(n.client_id)
        delivery = None if client is None else client.delivery
        held_here = False
        if client is not None and delivery is not None and delivery.stage(n.id) is not None:
            held_here = True
            events = delivery.cancel(n.id, now)
            if self._carry(client, events, receipt) and client.link is not None:
                self.deliver(client.link)
            if not any(type(event) is Cancelled for event in events):
                return False  # it expired first
        elif n.id not in self._unwritten and (self.fleet is None or n.id in self.finished):
            return False
        else:
            # Cancelled here before, its status not written yet; or, in a fleet, for a client
            # held elsewhere: the store's record first, then that node.
            self._record(StatusChange(Status.CANCELLED, (n,), now, receipt))
        try:
            await receipt.wait()
        except StoreError:
            self._unwritten.add(n.id)
            raise
        self._unwritten.discard(n.id)
        if not held_here and self.fleet is not None:
            await self.fleet.cancelled(n)  # the node holding its client cancels it there
        return True

    def tick(self, wall: float) -> None:
        """Time passed: expire what is due for the clients held here (their deliveries'
        deadlines), and send what that made room for."""
        for client in list(self.clients.values()):
            delivery = client.delivery
            if delivery is None:
                continue
            deadline = delivery.deadline()
            if deadline is None or deadline > wall:
                continue
            if self._carry(client, delivery.tick(wall)) and client.link is not None:
                self.deliver(client.link)

    # --- carrying out what the deliveries say --------------------------------------------

    def _delivery(self, client: Client, wall: float) -> Delivery[StoredNotification]:
        """The client's delivery, made with its first notification; a connection already
        welcomed carries it from the start."""
        delivery = client.delivery
        if delivery is None:
            delivery = client.delivery = Delivery()  # its window: aoi.core.delivery.WINDOW
            link = client.link
            if link is not None and link.session.state is _ESTABLISHED:
                delivery.connected(link, wall)  # nothing pending yet: nothing to do
        return delivery

    def _carry(
        self,
        client: Client,
        events: list[Event[StoredNotification]],
        receipt: Receipt | None = None,
    ) -> bool:
        """Do what ``client``'s delivery said: each ``notify`` goes to its connection's
        session (the writer, or :attr:`deliver`, puts it on the wire), each final status to
        :attr:`record`. Whether anything was sent. A ``notify`` for a session that is
        closing is dropped: the delivery sends it again on the next connection."""
        sent = False
        for event in events:
            kind = type(event)
            if kind is Notify:
                # The delivery sends only on the connection it was given: the client's link.
                session = client.link.session  # type: ignore[union-attr]
                if session.state is _ESTABLISHED:
                    session.send(event, self.clock.now())  # type: ignore[arg-type]
                    sent = True
            else:
                self._record(
                    StatusChange(
                        _STATUS[kind], event.notifications, event.at,  # type: ignore[union-attr]
                        receipt if kind is Cancelled else None,
                    )
                )  # fmt: skip
        return sent

    def _record(self, change: StatusChange) -> None:
        if self.fleet is not None:
            finished = self.finished
            for n in change.notifications:
                finished[n.id] = None
            while len(finished) > FINISHED_KEPT:
                finished.popitem(last=False)
        self.record(change)
