"""The delivery core against a model of its rules, on random histories (hypothesis).

Pushes, acks (of ids sent, pending, finished or never pushed), nacks, cancels, collapses,
unregistrations, connections coming and going and time passing, in any order. After every
step the events are checked against what the rules allow, and a model of what is pending
against the core. Now and then the client is made to take everything: it must all arrive.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from aoi.core.delivery import Cancelled, CancelReason, Delivered, Delivery, Event, Expired, Stage
from aoi.core.messages import Notify
from aoi.server.store import StoredNotification

T0 = 1_800_000_000.0
WINDOW = 3
RANK = {"high": 0, "normal": 1, "low": 2}
TOKENS = ("T" * 22, "U" * 22)
APPS = {TOKENS[0]: "com.example.chat", TOKENS[1]: "com.example.mail"}


Note = StoredNotification  # the record the server delivers


class DeliveryRules(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.delivery: Delivery[Note] = Delivery(window=WINDOW)
        self.now = T0
        self.pushed: dict[str, Note] = {}
        self.seq: dict[str, int] = {}
        self.pending: set[str] = set()  # what the model says is not finished
        self.connection = object()
        self.connected = False
        self.outstanding: set[str] = set()  # sent on this connection, neither acked nor nacked
        self.nacked: set[str] = set()  # nacked on this connection, its app not back since

    # --- checking what came out ----------------------------------------------------------

    def take(self, events: list[Event[Note]], *, acked: frozenset[str] = frozenset()) -> None:
        """Check the events of one input and bring the model up to date."""
        notifies = [e for e in events if isinstance(e, Notify)]
        done = [(e, n) for e in events if not isinstance(e, Notify) for n in e.notifications]
        for event, n in done:
            assert event.at == self.now
            assert n.id in self.pending, f"{n.id} finished twice or never pushed"
            if isinstance(event, Delivered):
                assert n.id in acked, f"{n.id} delivered without an ack"
            elif isinstance(event, Expired):
                assert self.now >= n.expires_at, f"{n.id} expired before its TTL was reached"
            self.pending.discard(n.id)
            self.outstanding.discard(n.id)
            self.nacked.discard(n.id)
        if notifies:
            assert self.connected, "sent with no connection"
        keys = []
        for notify in notifies:
            n = self.pushed[notify.id]
            assert notify.id in self.pending, f"{notify.id} sent after it finished"
            assert self.now < n.expires_at, f"{notify.id} sent once its TTL was reached"
            assert notify.id not in self.outstanding, f"{notify.id} sent twice on a connection"
            assert notify.id not in self.nacked, f"{notify.id} resent after a nack"
            assert notify.ttl_s == n.ttl_s and notify.priority == n.priority
            self.outstanding.add(notify.id)
            keys.append((RANK[n.priority], self.seq[n.id]))
        assert keys == sorted(keys), "sent out of priority or acceptance order"
        waiting = [self._key(i) for i in self._queued()]
        if keys and waiting:
            assert max(keys) < min(waiting), "a later or lower one went ahead of a queued one"
        if self.connected and len(self.outstanding) < WINDOW:
            assert not waiting, "room in the window, yet something queued was not sent"
        assert len(self.outstanding) <= WINDOW

    def _queued(self) -> list[str]:
        return [i for i in self.pending if i not in self.outstanding and i not in self.nacked]

    def _key(self, notification_id: str) -> tuple[int, int]:
        return RANK[self.pushed[notification_id].priority], self.seq[notification_id]

    # --- inputs --------------------------------------------------------------------------

    @rule(
        priority=st.sampled_from(["high", "normal", "low"]),
        ttl_s=st.sampled_from([0, 1, 5, 60]),
        token=st.sampled_from(TOKENS),
        collapse_key=st.sampled_from([None, None, "score", "news"]),
    )
    def push(self, priority: str, ttl_s: int, token: str, collapse_key: str | None) -> None:
        id = f"n{len(self.pushed)}"
        n = Note(
            id=id, token=token, client_id="device-1", app_id=APPS[token], payload=id,
            priority=priority, ttl_s=ttl_s, created_at=self.now, expires_at=self.now + ttl_s,
            collapse_key=collapse_key, pushed_by="chat",
        )  # fmt: skip
        older = {
            i
            for i in self.pending
            if collapse_key is not None
            and self.pushed[i].collapse_key == collapse_key
            and self.pushed[i].token == token
        }
        self.pushed[id] = n
        self.seq[id] = len(self.seq)
        self.pending.add(id)
        events = self.delivery.push(n, self.now)
        replaced = {
            n.id
            for e in events
            if isinstance(e, Cancelled) and e.reason is CancelReason.REPLACED
            for n in e.notifications
        }
        assert replaced == older - {i for i in older if self.now >= self.pushed[i].expires_at}
        self.take(events)

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 3.0, 30.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.take(self.delivery.tick(self.now))

    @rule()
    def tick_at_deadline(self) -> None:
        deadline = self.delivery.deadline()
        if deadline is not None:
            self.now = max(self.now, deadline)
            events = self.delivery.tick(self.now)
            assert any(isinstance(e, Expired) for e in events), "the deadline had nothing due"
            self.take(events)

    @rule()
    def connect(self) -> None:
        self.connection = object()  # a new one: a connection is known by identity
        self.outstanding.clear()
        self.nacked.clear()
        self.connected = True
        self.take(self.delivery.connected(self.connection, self.now))

    @rule()
    def disconnect(self) -> None:
        self.delivery.disconnected(self.connection)
        self.connected = False
        self.outstanding.clear()
        self.nacked.clear()

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        known = sorted(self.pushed)
        extra = ["unknown-1", "unknown-2"]
        ids = data.draw(st.lists(st.sampled_from(known + extra), max_size=4))
        before = set(self.pending)
        events = self.delivery.ack(ids, self.now)
        delivered = {n.id for e in events if isinstance(e, Delivered) for n in e.notifications}
        expired_now = {i for i in before if self.now >= self.pushed[i].expires_at}
        assert delivered == (set(ids) & before) - expired_now, "acks of unknown ids change nothing"
        self.take(events, acked=frozenset(ids))

    @precondition(lambda self: self.outstanding)
    @rule(data=st.data())
    def nack(self, data: st.DataObject) -> None:
        id = data.draw(st.sampled_from(sorted(self.outstanding)))
        self.outstanding.discard(id)
        events = self.delivery.nack(id, self.now)
        if id in self.pending and self.now < self.pushed[id].expires_at:
            self.nacked.add(id)
        self.take(events)

    @rule(token=st.sampled_from(TOKENS))
    def app_registered(self, token: str) -> None:
        self.nacked -= {i for i in self.nacked if self.pushed[i].app_id == APPS[token]}
        self.take(self.delivery.app_registered(APPS[token], self.now))

    @precondition(lambda self: self.pushed)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        id = data.draw(st.sampled_from(sorted(self.pushed)))
        live = id in self.pending and self.now < self.pushed[id].expires_at
        events = self.delivery.cancel(id, self.now)
        cancelled = [n.id for e in events if isinstance(e, Cancelled) for n in e.notifications]
        assert cancelled == ([id] if live else [])
        self.take(events)

    @rule(token=st.sampled_from(TOKENS))
    def unregistered(self, token: str) -> None:
        events = self.delivery.unregistered(token, self.now)
        for event in events:
            if isinstance(event, Cancelled):
                assert {n.token for n in event.notifications} == {token}
        self.take(events)
        assert not any(self.pushed[i].token == token for i in self.pending)

    @rule()
    def client_takes_everything(self) -> None:
        """At least once: on a fresh connection, with every app present and the client
        acking all it gets, everything pending arrives before time moves on."""
        self.connect()
        for _ in range(len(self.pending) + 1):
            ids = sorted(self.outstanding)
            if not ids:
                break
            self.take(self.delivery.ack(ids, self.now), acked=frozenset(ids))
        assert not self.pending, f"never delivered: {sorted(self.pending)}"
        assert len(self.delivery) == 0

    # --- the model and the core agree ----------------------------------------------------

    @invariant()
    def same_pending(self) -> None:
        for id in self.pushed:
            stage = self.delivery.stage(id)
            assert (stage is not None) == (id in self.pending), id
            if id in self.outstanding:
                assert stage is Stage.IN_FLIGHT
        assert self.delivery.in_flight == len(self.outstanding)

    @invariant()
    def collapse_keeps_the_newest(self) -> None:
        newest = {(n.token, n.collapse_key): id for id, n in self.pushed.items()}  # in order
        for id in self.pending:
            n = self.pushed[id]
            if n.collapse_key is not None:
                assert id == newest[(n.token, n.collapse_key)], f"{id} pending beside a newer one"

    @invariant()
    def deadline_is_the_first_expiry(self) -> None:
        live = [self.pushed[i].expires_at for i in self.pending]
        expected = min(live) if live else None
        assert self.delivery.deadline() == expected


DeliveryRules.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_delivery_rules = DeliveryRules.TestCase
