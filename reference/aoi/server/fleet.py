"""One node of a fleet: AOI Servers of one provider sharing one Redis store.

Any node accepts pushes for any token; the session of a client is held by the node it is
connected to. The store's router (:mod:`.store.redis_router`) says which node that is:

- a client that connects to this node is *adopted*: the node claims it, takes its session,
  registrations and queue from the store, and tells the node that held it before to close
  that connection (4409);
- a notification accepted here for a client held elsewhere is stored, then forwarded to the
  holding node's channel; a client held by no node finds it in its queue when it connects;
- a session that ends here releases the claim, and its state leaves this node's memory.

Forwarding is at most once (pub/sub): when this node's subscription was down, each client
it holds takes its queue from the store again. Nothing is lost either way: the store's queue
is the truth, and the client drops the duplicates a resend can make (by notification id).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from aoi.core.errors import CloseCode

from .store import StoredNotification, StoreError
from .store.redis_pubsub import Gap, Subscription
from .store.redis_router import HERE, RedisRouter, node_of
from .store.redis_store import RedisStore
from .store.resp import RedisError

if TYPE_CHECKING:
    from .hub import Hub
    from .link import Client, Link

log = logging.getLogger("aoi.server.fleet")

_FIELDS = (
    "id", "token", "client_id", "app_id", "payload", "priority", "ttl_s", "created_at",
    "expires_at", "collapse_key", "pushed_by",
)  # fmt: skip


def _encode(kind: str, **members: Any) -> bytes:
    return json.dumps({"kind": kind, **members}, separators=(",", ":")).encode()


def _row(n: StoredNotification) -> list[Any]:
    return [getattr(n, name) for name in _FIELDS]


class Fleet:
    """This node's part in the fleet: ``hub``'s clients, on ``store``'s Redis."""

    def __init__(self, hub: Hub, store: RedisStore, server_id: str) -> None:
        self.hub = hub
        self.store = store
        self.node = f"{server_id}.{secrets.token_hex(4)}"
        self.router = RedisRouter(store, self.node)
        self.forwarded = 0  # notifications sent to another node
        self.received = 0  # notifications received from another node
        self._releases, self._to_release = trio.open_memory_channel[tuple[str, str]](math.inf)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive what other nodes send, and release claims; until cancelled."""
        subscription = Subscription(self.store.url, [self.router.channel], name="aoi-fleet")
        try:
            await subscription.connect()
        except RedisError as exc:  # Redis went between the store's start and this
            raise StoreError(f"cannot subscribe to the fleet's channel: {exc}") from exc
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._release)
                task_status.started()
                async for event in subscription:
                    if isinstance(event, Gap):
                        nursery.start_soon(self._reconcile)
                    else:
                        self._received(event.data)
        finally:
            await subscription.aclose()

    # --- sessions ------------------------------------------------------------------------

    async def adopt(self, client: Client, link: Link) -> None:
        """``link`` welcomes ``client`` here: claim it and take its state from the store,
        unless this node holds it already (a reconnection to the same node)."""
        if client.link is not None and client.link.claim is not None:
            link.claim = client.link.claim
            return
        claim, previous = await self.router.claim(client.client_id)
        link.claim = claim
        client.session_id = await self.store.get_session(client.client_id)
        client.tokens = {}
        for registration in await self.store.registrations_of(client.client_id):
            client.tokens[registration.app_id] = registration.token
            self.hub.registrations[registration.token] = registration
        wall = self.hub.clock.wall()
        for n in await self.store.queued_for(client.client_id):
            if not self.hub.knows(client, n.id):
                self.hub.add_pending(n, wall)  # no connection of it here yet: nothing sent
        if previous is not None and node_of(previous) != self.node:
            message = _encode("taken", client=client.client_id, claim=previous)
            await self.router.send(node_of(previous), message)

    def leave(self, client: Client, link: Link) -> None:
        """The session of ``client`` on ``link`` ended here."""
        if link.claim is not None:
            self._releases.send_nowait((client.client_id, link.claim))
        self.hub.forget(client)

    async def _release(self) -> None:
        async for client_id, claim in self._to_release:
            try:
                await self.router.release(client_id, claim)
            except StoreError as exc:  # the claim stays: messages to it reach nobody
                log.warning("fleet_release_failed", extra={"client": client_id, "why": str(exc)})

    # --- notifications -------------------------------------------------------------------

    async def accept(self, batch: Sequence[tuple[StoredNotification, Sequence[str]]]) -> None:
        """Store ``batch`` durably, then hand each notification to its client's node."""
        hub = self.hub
        elsewhere = frozenset(
            n.client_id
            for n, _ in batch
            if (client := hub.clients.get(n.client_id)) is None or client.link is None
        )
        cancelled = await self.store.add_collapsing(batch, elsewhere)
        by_client: dict[str, list[StoredNotification]] = {}
        for n, _ in batch:
            by_client.setdefault(n.client_id, []).append(n)
        here: list[StoredNotification] = []
        for client_id, notifications in by_client.items():
            if client_id not in elsewhere:
                here += notifications
                continue
            message = _encode(
                "notify", notifications=[_row(n) for n in notifications], cancelled=cancelled
            )
            try:
                received = await self.router.forward(client_id, message)
            except StoreError:
                continue  # stored: the client's next connection finds it in its queue
            if received == HERE:  # the client connected here meanwhile
                here += notifications
            elif received:
                self.forwarded += len(notifications)
        hub.arrived(here, cancelled)

    async def cancelled(self, n: StoredNotification) -> None:
        """``n`` was cancelled here; the node holding its client cancels it there too, so
        that it is not sent again."""
        message = _encode("cancelled", ids=[n.id], client=n.client_id)
        with contextlib.suppress(StoreError):  # a late delivery does not change the report
            await self.router.forward(n.client_id, message)

    # --- what other nodes send -----------------------------------------------------------

    def _received(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            kind = message["kind"]
            if kind == "notify":
                rows = message["notifications"]
                notifications = [StoredNotification(*row) for row in rows]
                self.received += len(notifications)
                self.hub.arrived(notifications, message["cancelled"])
            elif kind == "cancelled":
                wall = self.hub.clock.wall()
                for notification_id in message["ids"]:
                    self.hub.cancelled(notification_id, message.get("client"), wall)
            elif kind == "taken":
                self._taken(message["client"], message["claim"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("fleet_message_unreadable", extra={"why": repr(exc)[:200]})

    def _taken(self, client_id: str, claim: str) -> None:
        """Another node took the client's session: close its connection here (4409)."""
        client = self.hub.clients.get(client_id)
        link = None if client is None else client.link
        if link is not None and link.claim == claim and link.session.closed is None:
            link.session.close(CloseCode.SESSION_TAKEN_OVER, "session resumed on another server")
            link.flush()

    async def _reconcile(self) -> None:
        """Forwards may have been lost: the clients held here take their queues again."""
        for client in list(self.hub.clients.values()):
            if client.link is None:
                continue
            try:
                queued = await self.store.queued_for(client.client_id)
            except StoreError:
                return  # the next gap tries again
            self.hub.arrived(list(queued), [])
