"""The AOI Server's working state: who is connected, which tokens exist, what is queued.

Everything lives in memory and is written through to the store before it counts: a
registration before ``registered`` is sent, a notification before its 201. At start-up the
hub is rebuilt from the store, so a crash loses nothing that was acknowledged.

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

from aoi.core.messages import Notify
from aoi.core.rfc3339 import rfc3339

from .link import Client, Link
from .store import Registration, Status, Store, StoredNotification, StoreGone
from .store.routes import new_token

if TYPE_CHECKING:
    from .fleet import Fleet

WINDOW = 64  # notifications in flight per session before waiting for acks
FINISHED_KEPT = 4096  # ids a fleet node remembers as finished, against late forwards


@dataclass(frozen=True, slots=True)
class StatusChange:
    """Notifications that reached a final state, for the store (written in batches)."""

    status: str  # delivered | expired
    ids: list[str]
    at: float  # wall-clock seconds since the epoch


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
        self.fleet: Fleet | None = None
        self.finished: OrderedDict[str, None] = OrderedDict()  # in a fleet: acked, expired...
        # What accept does with the link of a client that has a new notification: wake its
        # writer, or (the AOI-2 endpoint's) hand it over at once. Either way after storing.
        self.deliver: Callable[[Link], None] = Link.flush

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
        client.requeue_all()
        return client.session_id, resumed, previous

    def detach(self, link: Link) -> None:
        client = self.clients.get(link.client_id)
        if client is not None and client.link is link:
            client.link = None
            self.established -= 1
            if self.fleet is not None:
                self.fleet.leave(client, link)

    def forget(self, client: Client) -> None:
        """Drop a client's state from memory (a fleet node whose session of it ended)."""
        if client.link is None and not client.attaching:
            for notification_id in client.pending:
                del self.notifications[notification_id]
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
        """Queued, never-sent notifications that a new one with ``collapse_key`` replaces
        (in a fleet, those of a client held elsewhere are found by the store)."""
        registration = self.registrations[token]
        client = self.clients.get(registration.client_id)
        if client is None:
            return []
        in_flight = client.link.in_flight if client.link is not None else {}
        return [
            n.id
            for n in client.pending.values()
            if n.token == token and n.collapse_key == collapse_key and n.id not in in_flight
        ]

    async def accept(self, notification: StoredNotification, replaces: list[str]) -> None:
        """Store durably, then queue for delivery. Returns once the 201 may be sent."""
        if self.fleet is not None:
            return await self.accept_many([(notification, replaces)])
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
        if self.fleet is not None:
            try:
                return await self.fleet.accept(batch)
            except StoreGone as gone:
                self.retire(gone.token)
                raise
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

    def arrived(self, notifications: list[StoredNotification], cancelled: list[str]) -> None:
        """Another node (or this one) accepted ``notifications`` for clients held here, and
        cancelled ``cancelled`` as replaced by them."""
        for old in cancelled:
            self.cancelled(old)
        links: dict[str, Link] = {}
        for n in notifications:
            client = self.clients.get(n.client_id)
            if client is None or (client.link is None and not client.attaching):
                continue  # its session ended meanwhile: the store's queue has it
            if n.id not in self.notifications and n.id not in self.finished:
                self._add_pending(n)
                if client.link is not None:
                    links[n.client_id] = client.link
        for link in links.values():
            self.deliver(link)

    def cancelled(self, notification_id: str) -> None:
        """The store cancelled it (another node did): forget it unless already sent."""
        n = self.notifications.get(notification_id)
        if n is not None:
            link = self.clients[n.client_id].link
            if link is None or notification_id not in link.in_flight:
                self._drop(notification_id)

    def _drop(self, notification_id: str) -> StoredNotification | None:
        n = self.notifications.pop(notification_id, None)
        if n is not None:
            self.clients[n.client_id].pending.pop(notification_id, None)
            if self.fleet is not None:
                self.finished[notification_id] = None
                if len(self.finished) > FINISHED_KEPT:
                    self.finished.popitem(last=False)
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

    async def cancel(self, n: StoredNotification, now: float) -> bool:
        """Cancel ``n``, queued in the store, unless it was sent already (too late)."""
        here = self.notifications.get(n.id)
        if here is None and (self.fleet is None or n.id in self.finished):
            return False
        if here is not None:
            link = self.clients[n.client_id].link
            if link is not None and n.id in link.in_flight:
                return False
            self._drop(n.id)
        await self.store.set_status([n.id], Status.CANCELLED, now)
        if here is None and self.fleet is not None:
            await self.fleet.cancelled(n)  # the node holding its client forgets it
        return True

    def expire(self, ids: list[str]) -> None:
        for notification_id in ids:
            self._drop(notification_id)
