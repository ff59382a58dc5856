"""Prometheus metrics of the AOI Server, served at ``GET /metrics``."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from aoi import __version__
from aoi.core.messages import RejectReason
from aoi.core.overload import DRAINING

from .store import StoredNotification

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60)
# Every label value known in advance is exposed from the start, at 0, so that rate() and
# alerts see the first event too. Drain refusals are counted apart from overload.
REJECT_REASONS = (*(reason.value for reason in RejectReason), DRAINING)
PUSH_STATUSES = (201, 400, 401, 403, 404, 410, 413, 429, 503)


class Metrics:
    def __init__(self, wall_clock: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        Info("aoi_build", "The AOI Server's version", registry=r).info({"version": __version__})
        self.wall_clock = wall_clock
        self.sessions = Gauge("aoi_sessions", "Established AOI-2 sessions", registry=r)
        self.hellos = Counter("aoi_hello_accepted", "Hellos answered with welcome", registry=r)
        self.rejects = Counter(
            "aoi_hello_rejected",
            "Hellos answered with reject, by reason (draining: refused while draining)",
            ["reason"],
            registry=r,
        )
        for reason in REJECT_REASONS:
            self.rejects.labels(reason)
        self.redirects = Counter("aoi_redirects", "Sessions shed with redirect", registry=r)
        self.pushes = Counter(
            "aoi_push_requests", "AOI-3 push requests by status", ["status"], registry=r
        )
        for status in PUSH_STATUSES:
            self.pushes.labels(str(status))
        self.accepted_notifications = Counter(
            "aoi_notifications_accepted", "Notifications stored (201)", registry=r
        )
        self.deliveries = Counter("aoi_notifications_delivered", "Notifications acked", registry=r)
        self.expired = Counter("aoi_notifications_expired", "Notifications expired", registry=r)
        self.latency = Histogram(
            "aoi_delivery_latency_seconds", "From acceptance to the client's ack",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.store_backlog = Gauge("aoi_store_backlog", "Writes waiting for the store", registry=r)
        self.loop_lag = Gauge("aoi_loop_lag_seconds", "Event-loop lag", registry=r)
        self.overloaded = Gauge(
            "aoi_overloaded", "1 while refusing new sessions for load (not for drain)", registry=r
        )
        self.draining = Gauge("aoi_draining", "1 in drain mode", registry=r)
        self.store_failing = Gauge(
            "aoi_store_failing", "1 while the store's writes fail (disk full, I/O)", registry=r
        )
        self.store_write_errors = Counter(
            "aoi_store_write_errors", "Store writes that failed", registry=r
        )
        self.forwarded = Counter(
            "aoi_fleet_forwarded", "Notifications sent to the fleet node holding the session",
            registry=r,
        )  # fmt: skip
        self.forwards_received = Counter(
            "aoi_fleet_received", "Notifications received from other nodes of the fleet",
            registry=r,
        )  # fmt: skip
        self.connections = Gauge("aoi_http_connections", "Open connections", registry=r)
        self.connections_refused = Counter(
            "aoi_http_connections_refused", "Connections refused at max_connections", registry=r
        )
        self.accept_errors = Counter(
            "aoi_accept_errors", "accept() failures for lack of descriptors or memory", registry=r
        )
        self.connection_errors = Counter(
            "aoi_http_connection_errors", "Connections ended by an unexpected error", registry=r
        )
        # Totals kept elsewhere (the store, the listener), and how much of each is counted.
        self._counted: dict[Counter, int] = {}

        # Counted on the hot path as plain ints, folded into the counters above whenever
        # they are read (exposition) or the tally grows: a prometheus counter takes a lock.
        self._pushes_tally: dict[int, int] = {}
        self._accepted_tally = 0
        self._tallied = 0

    def pushed(self, status: int) -> None:
        """One AOI-3 push answered with ``status``."""
        tally = self._pushes_tally
        tally[status] = tally.get(status, 0) + 1
        self._tallied += 1
        if self._tallied >= 1024:
            self.fold()

    def accepted_notification(self) -> None:
        """One notification stored (its push is answered 201)."""
        self._accepted_tally += 1

    def fold(self) -> None:
        """Bring the prometheus counters up to date with the hot path's tallies."""
        tally, self._pushes_tally, self._tallied = self._pushes_tally, {}, 0
        for status, count in tally.items():
            self.pushes.labels(str(status)).inc(count)
        accepted, self._accepted_tally = self._accepted_tally, 0
        if accepted:
            self.accepted_notifications.inc(accepted)

    def accepted(self) -> None:
        self.hellos.inc()

    def rejected(self, reason: str) -> None:
        self.rejects.labels(reason).inc()

    def delivered(self, done: Iterable[StoredNotification]) -> None:
        wall = self.wall_clock()
        count = 0
        for n in done:
            self.latency.observe(max(0.0, wall - n.created_at))
            count += 1
        self.deliveries.inc(count)

    def total(self, counter: Counter, value: int) -> None:
        """Bring ``counter`` up to ``value``, a total that its owner keeps."""
        counted = self._counted.get(counter, 0)
        if value > counted:
            counter.inc(value - counted)
            self._counted[counter] = value

    def exposition(self) -> bytes:
        self.fold()
        return generate_latest(self.registry)
