"""The delivery core, rule by rule: inputs with their wall times in, notifies and statuses out."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from aoi.core.delivery import (
    TRANSITIONS,
    Cancelled,
    CancelReason,
    Delivered,
    Delivery,
    Event,
    Expired,
    Input,
    Stage,
)
from aoi.core.messages import Notify

T0 = 1_800_000_000.0
TOKEN, OTHER_TOKEN = "T" * 22, "U" * 22
APP, OTHER_APP = "com.example.chat", "com.example.mail"


@dataclass(frozen=True, slots=True)
class Note:
    """A notification record as the owner keeps it (the store's has more fields)."""

    id: str
    priority: str = "normal"
    ttl_s: int = 60
    created_at: float = T0
    collapse_key: str | None = None
    token: str = TOKEN
    app_id: str = APP
    payload: str = "hi"

    @property
    def expires_at(self) -> float:
        return self.created_at + self.ttl_s


def sent(events: list[Event[Note]]) -> list[str]:
    return [e.id for e in events if isinstance(e, Notify)]


def finished(events: list[Event[Note]]) -> list[tuple[str, str]]:
    return [
        (type(e).__name__, n.id)
        for e in events
        if not isinstance(e, Notify)
        for n in e.notifications
    ]


def online(window: int = 64) -> Delivery[Note]:
    delivery: Delivery[Note] = Delivery(window=window)
    assert delivery.connected("conn-1", T0) == []
    return delivery


def test_a_push_to_a_connected_client_is_sent_at_once_as_notify() -> None:
    delivery = online()
    note = Note("n1", priority="high", ttl_s=3600, created_at=T0 + 0.25, collapse_key="k")
    (notify,) = delivery.push(note, T0 + 0.25)
    assert notify == Notify(
        id="n1", token=TOKEN, app_id=APP, payload="hi", priority="high",
        ttl_s=3600, created_at="2027-01-15T08:00:00.250Z", collapse_key="k",
    )  # fmt: skip
    assert delivery.stage("n1") is Stage.IN_FLIGHT
    assert delivery.in_flight == 1


def test_an_offline_client_gets_its_queue_by_priority_then_acceptance() -> None:
    delivery: Delivery[Note] = Delivery()
    for id, priority in [("l1", "low"), ("n1", "normal"), ("h1", "high"), ("n2", "normal")]:
        assert delivery.push(Note(id, priority=priority), T0) == []
    assert delivery.push(Note("h2", priority="high"), T0) == []
    assert sent(delivery.connected("conn-1", T0 + 1)) == ["h1", "h2", "n1", "n2", "l1"]


def test_the_window_bounds_what_is_in_flight_and_acks_refill_it() -> None:
    delivery = online(window=2)
    assert sent(delivery.push(Note("n1"), T0)) == ["n1"]
    assert sent(delivery.push(Note("n2"), T0)) == ["n2"]
    assert delivery.push(Note("n3"), T0) == []
    assert delivery.push(Note("h1", priority="high"), T0) == []
    # The next room goes to the high one, queued after n3 but ahead of it.
    events = delivery.ack(["n1"], T0 + 1)
    assert finished(events) == [("Delivered", "n1")]
    assert sent(events) == ["h1"]
    assert sent(delivery.ack(["n2", "h1"], T0 + 2)) == ["n3"]


def test_acks_of_unknown_or_finished_ids_are_ignored() -> None:
    delivery = online()
    delivery.push(Note("n1"), T0)
    assert delivery.ack(["nope"], T0) == []
    assert delivery.ack(["n1", "n1"], T0) == [Delivered((Note("n1"),), T0)]
    assert delivery.ack(["n1"], T0 + 1) == []
    assert len(delivery) == 0


def test_what_was_in_flight_goes_out_again_first_on_the_next_connection() -> None:
    delivery = online(window=1)
    delivery.push(Note("n1"), T0)
    delivery.push(Note("n2"), T0)
    delivery.push(Note("h1", priority="high"), T0)
    delivery.disconnected("conn-1")
    assert delivery.stage("n1") is Stage.QUEUED
    assert delivery.in_flight == 0
    assert sent(delivery.connected("conn-2", T0 + 1)) == ["h1"]
    assert sent(delivery.ack(["h1"], T0 + 1)) == ["n1"]  # before n2, accepted later


def test_an_ack_on_a_new_connection_for_what_the_old_one_carried_delivers_it() -> None:
    delivery = online(window=1)
    delivery.push(Note("n1"), T0)
    delivery.push(Note("n2"), T0)
    delivery.disconnected("conn-1")
    delivery.push(Note("n3"), T0)
    events = delivery.connected("conn-2", T0 + 1)
    assert sent(events) == ["n1"]
    events = delivery.ack(["n1", "n2"], T0 + 1)  # n2 reached the client before, somehow
    assert finished(events) == [("Delivered", "n1"), ("Delivered", "n2")]
    assert sent(events) == ["n3"]


def test_a_replaced_connection_is_lost_and_its_late_end_changes_nothing() -> None:
    delivery = online()
    delivery.push(Note("n1"), T0)
    # The client resumed on a second connection before the first one was seen to close.
    assert sent(delivery.connected("conn-2", T0 + 1)) == ["n1"]
    delivery.disconnected("conn-1")
    assert delivery.stage("n1") is Stage.IN_FLIGHT
    assert delivery.push(Note("n2"), T0 + 2) != []


def test_a_nacked_notification_waits_for_its_app_or_the_next_connection() -> None:
    delivery = online(window=1)
    delivery.push(Note("n1"), T0)
    delivery.push(Note("m1", app_id=OTHER_APP), T0)
    events = delivery.nack("n1", T0 + 1)
    assert sent(events) == ["m1"], "a nacked notification leaves the window"
    assert delivery.stage("n1") is Stage.NACKED
    assert delivery.ack(["m1"], T0 + 2) == [Delivered((Note("m1", app_id=OTHER_APP),), T0 + 2)]
    assert delivery.app_registered(OTHER_APP, T0 + 3) == []
    assert sent(delivery.app_registered(APP, T0 + 3)) == ["n1"]
    delivery.nack("n1", T0 + 4)
    delivery.disconnected("conn-1")
    assert sent(delivery.connected("conn-2", T0 + 5)) == ["n1"]


def test_nothing_is_sent_once_its_ttl_is_reached_and_then_it_expires() -> None:
    delivery: Delivery[Note] = Delivery()
    delivery.push(Note("n1", ttl_s=10), T0)
    delivery.push(Note("n2", ttl_s=20), T0)
    assert delivery.deadline() == T0 + 10
    assert delivery.tick(math.nextafter(T0 + 10, 0)) == [], "just before created_at + ttl_s"
    assert delivery.tick(T0 + 10) == [Expired((Note("n1", ttl_s=10),), T0 + 10)]
    assert delivery.deadline() == T0 + 20
    # An input at a later time expires what is due first, whether or not tick() ran.
    events = delivery.connected("conn-1", T0 + 21)
    assert finished(events) == [("Expired", "n2")]
    assert sent(events) == []
    assert delivery.deadline() is None


def test_in_flight_past_its_ttl_is_expired_and_a_late_ack_ignored() -> None:
    delivery = online()
    delivery.push(Note("n1", ttl_s=5), T0)
    delivery.push(Note("n2", ttl_s=5), T0)
    events = delivery.ack(["n1", "n2"], T0 + 6)
    assert events == [Expired((Note("n1", ttl_s=5), Note("n2", ttl_s=5)), T0 + 6)]


def test_ttl_zero_is_expired_at_acceptance_and_never_sent() -> None:
    # docs/protocol.md 2.8: not sent once created_at + ttl_s is reached, which for
    # ttl_s 0 is the moment of acceptance.
    delivery = online()
    events = delivery.push(Note("now", ttl_s=0), T0)
    assert sent(events) == [] and finished(events) == [("Expired", "now")]
    assert len(delivery) == 0 and delivery.deadline() is None


@pytest.mark.parametrize(
    "late_input",
    [
        lambda d, now: d.nack("unknown", now),
        lambda d, now: d.cancel("unknown", now),
        lambda d, now: d.app_registered(OTHER_APP, now),
    ],
    ids=["nack", "cancel", "app_registered"],
)
def test_room_made_by_an_expiry_is_filled_whatever_the_input(late_input) -> None:  # type: ignore[no-untyped-def]
    delivery = online(window=1)
    assert sent(delivery.push(Note("n1", ttl_s=5), T0)) == ["n1"]
    assert sent(delivery.push(Note("n2", ttl_s=60), T0)) == []  # the window is full
    events = late_input(delivery, T0 + 5)  # one that changes nothing itself
    assert finished(events) == [("Expired", "n1")] and sent(events) == ["n2"]


def test_a_ttl_0_push_replacing_one_in_flight_lets_the_next_one_out() -> None:
    delivery = online(window=1)
    assert sent(delivery.push(Note("n1", collapse_key="k"), T0)) == ["n1"]
    assert sent(delivery.push(Note("n2"), T0)) == []  # the window is full
    events = delivery.push(Note("n3", ttl_s=0, collapse_key="k"), T0)
    assert finished(events) == [("Cancelled", "n1"), ("Expired", "n3")]
    assert sent(events) == ["n2"]


def test_a_push_already_past_its_ttl_expires_at_once() -> None:
    delivery = online()
    assert delivery.push(Note("old", ttl_s=5), T0 + 6) == [Expired((Note("old", ttl_s=5),), T0 + 6)]
    assert len(delivery) == 0


def test_collapse_replaces_a_queued_notification_with_the_same_key() -> None:
    delivery: Delivery[Note] = Delivery()
    delivery.push(Note("s1", collapse_key="score"), T0)
    delivery.push(Note("x1", collapse_key="score", token=OTHER_TOKEN), T0)
    assert delivery.collapsible(TOKEN, "score") == "s1"
    events = delivery.push(Note("s2", collapse_key="score"), T0 + 1)
    assert events == [Cancelled((Note("s1", collapse_key="score"),), T0 + 1, CancelReason.REPLACED)]
    assert delivery.collapsible(TOKEN, "score") == "s2"
    assert sent(delivery.connected("conn-1", T0 + 2)) == ["x1", "s2"]


def test_collapse_of_one_in_flight_cancels_it_without_retracting_it() -> None:
    delivery = online()
    delivery.push(Note("s1", collapse_key="score"), T0)
    events = delivery.push(Note("s2", collapse_key="score"), T0 + 1)
    assert finished(events) == [("Cancelled", "s1")]
    assert sent(events) == ["s2"]
    assert delivery.ack(["s1"], T0 + 2) == [], "its ack comes too late"
    delivery.disconnected("conn-1")
    assert sent(delivery.connected("conn-2", T0 + 3)) == ["s2"], "s1 is never sent again"


def test_cancel_finishes_a_pending_notification_and_frees_its_room() -> None:
    delivery = online(window=1)
    delivery.push(Note("n1"), T0)
    delivery.push(Note("n2"), T0)
    events = delivery.cancel("n1", T0 + 1)
    assert events[0] == Cancelled((Note("n1"),), T0 + 1, CancelReason.REQUESTED)
    assert sent(events) == ["n2"]
    assert delivery.cancel("n1", T0 + 2) == []
    assert delivery.cancel("unknown", T0 + 2) == []


def test_unregistering_a_token_cancels_its_notifications_only() -> None:
    delivery: Delivery[Note] = Delivery()
    delivery.push(Note("a1"), T0)
    delivery.push(Note("b1", token=OTHER_TOKEN), T0)
    delivery.push(Note("a2", collapse_key="k"), T0)
    events = delivery.unregistered(TOKEN, T0 + 1)
    assert events == [
        Cancelled((Note("a1"), Note("a2", collapse_key="k")), T0 + 1, CancelReason.UNREGISTERED)
    ]
    assert delivery.collapsible(TOKEN, "k") is None
    assert len(delivery) == 1


def test_misuse_is_refused() -> None:
    delivery: Delivery[Note] = Delivery()
    delivery.push(Note("n1"), T0)
    with pytest.raises(ValueError, match="already pending"):
        delivery.push(Note("n1"), T0)
    with pytest.raises(ValueError, match="window"):
        Delivery(window=0)


def test_finished_notifications_do_not_pile_up_in_the_expiry_heap() -> None:
    delivery = online()
    for i in range(10_000):
        delivery.push(Note(f"n{i}", ttl_s=86400), T0)
        delivery.ack([f"n{i}"], T0)
    assert len(delivery) == 0
    assert len(delivery._expiry) <= 64
    assert delivery.deadline() is None


def test_the_table_moves_only_pending_notifications() -> None:
    final = {Stage.DELIVERED, Stage.EXPIRED, Stage.CANCELLED}
    assert not any(before in final for before, _ in TRANSITIONS)
    for what in (Input.ACK, Input.CANCEL, Input.EXPIRE):
        assert {TRANSITIONS[(s, what)] for s in Stage if s not in final} <= final
