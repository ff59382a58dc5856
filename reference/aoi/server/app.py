"""The reference AOI Server assembled: store, hub, endpoints, and the tasks that keep time."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import ssl
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from aoi.core.messages import Bye, Redirect
from aoi.core.overload import OverloadControl
from aoi.core.policy import load_policy
from aoi.net.http import HttpServer, WebSocketRoute

from .aoi2 import Aoi2Endpoint, SessionSettings
from .clock import Clock
from .config import ServerConfig
from .credentials import ClientCredentials, FailedHelloLimiter, ServerAppKeys
from .fleet import Fleet
from .hub import Hub, StatusChange
from .load import LoadMonitor
from .metrics import Metrics
from .push_api import PushApi
from .store import SqliteStore, Status, Store, StoreError
from .store.redis_store import RedisStore

log = logging.getLogger("aoi.server")

SWEEP_S = 1.0
STATUS_COLLECT_S = 0.01  # the status recorder's batching window
STORE_RETRY_S = 0.5  # first pause before writing statuses again after the store failed
STORE_RETRY_MAX_S = 5.0
SHED_TICK_S = 0.1
REPORT_RETENTION_S = 7 * 86400


@dataclass(frozen=True, slots=True)
class Listening:
    aoi2: str
    http: str


class Server:
    """One AOI Server. ``run`` serves until cancelled; ``drain`` and ``shutdown`` steer it."""

    def __init__(
        self, config: ServerConfig, store: Store | None = None, clock: Clock | None = None
    ) -> None:
        """``clock``: where every part reads the time (a test passes one that follows
        ``trio.testing.MockClock``)."""
        self.config = config
        s = config.server
        self.clock = clock or Clock()
        self.store = store or (RedisStore(s.store) if s.store else SqliteStore(s.db))
        self.hub = Hub(self.store, server_id=s.id, endpoint_base="", max_apps=s.max_apps)
        self.hub.clock = self.clock
        self.fleet = None
        if isinstance(self.store, RedisStore):  # a shared store: this server is a fleet's node
            self.fleet = self.hub.fleet = Fleet(self.hub, self.store, s.id)
        policy_bytes, keepalive_s = None, s.keepalive_s
        if s.policy is not None:
            policy_bytes = s.policy.read_bytes()
            policy = load_policy(json.loads(policy_bytes))  # refuse to serve an invalid one
            keepalive_s = min(keepalive_s, policy.keepalive_s)
        self.control = OverloadControl(config.overload, random.Random())
        self.load = LoadMonitor(self.control, self.hub, self.store)
        self.metrics = Metrics(self.clock.wall)
        self.status_send, self.status_receive = trio.open_memory_channel[StatusChange](math.inf)
        self.aoi2 = Aoi2Endpoint(
            self.hub,
            SessionSettings(s.id, keepalive_s, s.handshake_timeout_s, s.max_apps),
            ClientCredentials.from_config(config.clients),
            FailedHelloLimiter(
                config.security.failed_hello_limit, config.security.failed_hello_window_s
            ),
            self.load,
            self.metrics,
        )
        self.hub.deliver = self.aoi2.deliver_now
        self.hub.record = self._status_changed
        self.api = PushApi(
            self.hub,
            ServerAppKeys.from_config(config.server_apps),
            ClientCredentials.from_config(config.clients),
            self.load,
            self.metrics,
            policy_bytes,
            drain=self.set_draining,
        )
        self.http = HttpServer(
            self.api,
            {"/aoi": WebSocketRoute("aoi.v1", self.aoi2)},
            head_timeout_s=s.request_head_timeout_s,
            body_timeout_s=s.request_body_timeout_s,
            max_connections=s.max_connections,
        )
        self.api.listener = self.http

    def set_draining(self, draining: bool) -> None:
        self.load.draining = draining
        log.info("drain_mode_on" if draining else "drain_mode_off")

    async def run(
        self, *, task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED
    ) -> None:
        s = self.config.server
        async with trio.open_nursery() as nursery:
            await nursery.start(self.store.run)
            if self.fleet is not None:
                await nursery.start(self.fleet.run)
            await self.hub.restore()
            context = None
            if s.tls_cert is not None:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(s.tls_cert, s.tls_key)
            host, port = s.listen
            listeners = await nursery.start(
                partial(self.http.serve, host, port, ssl_context=context, reuse_port=s.reuse_port)
            )
            port = listeners[0].socket.getsockname()[1]
            shown = f"[{host}]" if ":" in host else host
            secure = "s" if context is not None else ""
            here = Listening(
                aoi2=f"ws{secure}://{shown}:{port}/aoi", http=f"http{secure}://{shown}:{port}"
            )
            self.hub.endpoint_base = (s.public_http_url or here.http).rstrip("/")
            if s.public_http_url is None and host in ("0.0.0.0", "::", ""):
                log.warning("public_http_url_needed", extra={"endpoint_base": here.http})
            nursery.start_soon(self._record_statuses)
            nursery.start_soon(self._sweep)
            nursery.start_soon(self.load.measure_lag)
            if self.config.overload.shed:
                nursery.start_soon(self._shed)
            log.info("listening", extra={"aoi2": here.aoi2, "http": here.http})
            task_status.started(here)

    async def shutdown(self, grace_s: float = 2.0) -> None:
        """Refuse newcomers, tell every session goodbye (1001), give them ``grace_s``."""
        self.load.draining = True  # part of shutting down, not logged as a drain of its own
        now = self.clock.now()
        for link in list(self.hub.links()):
            if link.session.closed is None:
                link.session.send(Bye(reason="server shutting down"), now)
                link.flush()
        with trio.move_on_after(grace_s):
            while any(True for _ in self.hub.links()):
                await trio.sleep(0.05)

    def _status_changed(self, change: StatusChange) -> None:
        """The hub's one way of recording a final status: counted now, written in a batch."""
        if change.status is Status.DELIVERED:
            self.metrics.delivered(change.notifications)
        self.status_send.send_nowait(change)

    async def _record_statuses(self) -> None:
        """Final statuses (acks, expiries, cancels) reach the store in batches; only a
        cancel's answer waits for its own (its receipt).

        After the first change the recorder waits ``STATUS_COLLECT_S`` for more, then writes
        each status in one store operation: at most one status commit per window (or per
        commit, when the store is slower) instead of one per ack frame, which at a thousand
        acks a second would queue behind each other. Each batch is stamped with its latest
        change's time: a ``delivered_at`` is never before the ack, at most a window after.
        A batch the store cannot take (a full disk) is kept and tried again, with the
        changes that came meanwhile, after a pause that grows to ``STORE_RETRY_MAX_S``."""
        changes: list[StatusChange] = []
        pause = STATUS_COLLECT_S
        try:
            while True:
                if not changes:
                    changes.append(await self.status_receive.receive())
                await trio.sleep(pause)
                try:
                    await self._write_statuses(self._drain_statuses(changes))
                except StoreError as exc:
                    for change in changes:
                        if change.receipt is not None:
                            change.receipt.settle(exc)  # answered 503, written later
                    pause = min(STORE_RETRY_MAX_S, max(STORE_RETRY_S, 2 * pause))
                    continue
                for change in changes:
                    if change.receipt is not None:
                        change.receipt.settle()
                changes, pause = [], STATUS_COLLECT_S
        finally:
            with (
                trio.CancelScope(shield=True, deadline=self.clock.now() + 1.0),
                contextlib.suppress(StoreError),
            ):
                await self._write_statuses(self._drain_statuses(changes))

    def _drain_statuses(self, changes: list[StatusChange]) -> list[StatusChange]:
        while True:
            try:
                changes.append(self.status_receive.receive_nowait())
            except trio.WouldBlock:
                return changes

    async def _write_statuses(self, changes: list[StatusChange]) -> None:
        batch: dict[str, tuple[list[str], float]] = {}
        for change in changes:
            ids, at = batch.get(change.status, ([], change.at))
            ids.extend(n.id for n in change.notifications)
            batch[change.status] = (ids, max(at, change.at))
        for status, (ids, at) in batch.items():
            await self.store.set_status(ids, status, at)
            if status == "expired":
                self.metrics.expired.inc(len(ids))

    async def _sweep(self) -> None:
        """TTL expiry, and pruning of old delivery reports. While the store's writes fail, a
        probe each round finds out when they succeed again.

        Expiry is the deliveries' (:meth:`Hub.tick`: their deadlines passed). A node of a
        fleet also expires, in the store, the queues of clients that no node holds."""
        last_purge = 0.0
        while True:
            await trio.sleep(SWEEP_S)
            now = self.clock.wall()
            self.hub.tick(now)
            try:
                if self.store.failure is not None:
                    await self.store.probe()
                if self.fleet is not None:
                    expired = await self.store.expire(now)
                    counted = [i for i in expired if i not in self.hub.finished]
                    if counted:  # the rest expired here, and are counted as they are written
                        self.metrics.expired.inc(len(counted))
                if now - last_purge > 3600:
                    await self.store.purge(now - REPORT_RETENTION_S)
                    last_purge = now
            except StoreError:
                continue  # the store says why in its failure (health, metrics)

    async def _shed(self) -> None:
        """Past the high-water mark, or draining, move sessions elsewhere with redirect, a few
        at a time: first those of the clients the hub came to know last (not the newest
        sessions: a client known since the start keeps its place when it reconnects)."""
        alternates = self.config.overload.alternates or None
        while True:
            await trio.sleep(SHED_TICK_S)
            now = self.clock.now()
            count = self.control.to_shed(now, self.load.load())
            if not count:
                continue
            reason = "maintenance" if self.load.draining else "overloaded"
            for link in list(self.hub.links())[-count:]:
                if link.session.closed is None:
                    retry_after_s = round(self.load.retry_after(), 3)
                    redirect = Redirect(
                        reason=reason, servers=alternates, retry_after_s=retry_after_s
                    )
                    link.session.send(redirect, now)
                    link.flush()
                    self.metrics.redirects.inc()
                    log.info(
                        "session_redirected",
                        extra={
                            "client": link.client_id,
                            "reason": reason,
                            "retry_after_s": retry_after_s,
                        },
                    )


def write_ready_file(path: Path, here: Listening) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"aoi2": here.aoi2, "http": here.http}))
    tmp.replace(path)
