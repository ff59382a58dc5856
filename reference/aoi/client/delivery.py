"""Notifications from the servers to the apps, and acks back: end to end, each id once.

A server's notification reaches an app only if its token was registered for that app
through the same session; it reaches the app's newest AOI-1 connection, and the server gets
``ack`` only after the app's ``app_ack``. A notification that arrives while the app's
``app_register`` is still unanswered waits until the app has been told its registration:
an app never meets a notification before it knows the token it came through. An id the app
acknowledged before (recorded across restarts until the notification expires) is acked to
the server again but never shown to the app twice. The wall clock (``clock``, seconds since
the epoch) is an input: it dates those records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from aoi.core.messages import AppNotification, Notify
from aoi.logs import EventLog

from .apps import App, AppPeer, InFlight
from .server_link import ServerLink
from .state import SeenIds, notification_expiry

_log = EventLog("aoi.client.delivery")

APP_NOT_PRESENT = "app_not_present"
UNKNOWN_TOKEN = "unknown_token"


class Delivery:
    def __init__(
        self, apps: Mapping[str, App], seen: SeenIds, clock: Callable[[], float] = time.time
    ) -> None:
        self.apps = apps
        self.seen = seen
        self.clock = clock
        self.held: dict[str, list[tuple[ServerLink, Notify]]] = {}

    def notified(self, link: ServerLink, notify: Notify) -> None:
        app = self.apps.get(notify.app_id)
        if app is None or link.tokens.get(notify.token) != notify.app_id:
            _log.info("notify_not_ours", server=link.key, id=notify.id, app_id=notify.app_id)
            link.nack(notify.id, UNKNOWN_TOKEN)
            return
        now = self.clock()
        if self.seen.contains(app.app_id, notify.id, now):
            _log.debug("duplicate_dropped", app_id=app.app_id, id=notify.id)
            link.ack(notify.id)
            return
        conn = app.conn
        if conn is None:
            link.nack(notify.id, APP_NOT_PRESENT)
            return
        if app.awaiting:
            self.held.setdefault(app.app_id, []).append((link, notify))
            return
        flight = conn.inflight.get(notify.id)
        if flight is not None:  # already with the app: its ack goes to the newest sender
            flight.link = link
            return
        message = AppNotification(
            id=notify.id,
            payload=notify.payload,
            priority=notify.priority,
            created_at=notify.created_at,
        )
        expiry = notification_expiry(notify.created_at, notify.ttl_s, now)
        conn.inflight[notify.id] = InFlight(app.app_id, link, expiry)
        if not conn.send(message):
            conn.inflight.pop(notify.id, None)
            link.nack(notify.id, APP_NOT_PRESENT)

    def release(self, app: App) -> None:
        """The app was answered (or is gone): what waited for that goes on its way."""
        for link, notify in self.held.pop(app.app_id, ()):
            self.notified(link, notify)

    def acked(self, conn: AppPeer, notification_id: str) -> None:
        flight = conn.inflight.pop(notification_id, None)
        if flight is None:
            _log.debug("ack_of_unknown_id", id=notification_id)
            return
        self.seen.add(flight.app_id, notification_id, flight.expires_at, self.clock())
        flight.link.ack(notification_id)

    def disconnected(self, conn: AppPeer) -> None:
        """The app is gone: what it did not ack stays queued at the server."""
        for notification_id, flight in conn.inflight.items():
            flight.link.nack(notification_id, APP_NOT_PRESENT)
        conn.inflight.clear()
