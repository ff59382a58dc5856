"""The hub around the delivery core, without sockets: what it records, and a cancel that the
store could not take at first."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from aoi.server.clock import Clock
from aoi.server.hub import Hub, StatusChange
from aoi.server.store import Status, StoredNotification, StoreError

WALL = 1_800_000_000.0


def notification(id: str, ttl_s: int = 60) -> StoredNotification:
    return StoredNotification(
        id=id, token="T" * 22, client_id="dev-1", app_id="com.example.chat", payload="hi",
        priority="normal", ttl_s=ttl_s, created_at=WALL, expires_at=WALL + ttl_s,
        collapse_key=None, pushed_by="chat",
    )  # fmt: skip


def hub(changes: list[StatusChange], wall: list[float]) -> Hub:
    h = Hub(None, server_id="a", endpoint_base="http://a", max_apps=4)  # type: ignore[arg-type]
    h.clock = Clock(wall=lambda: wall[0], now=lambda: 0.0)
    h.record = changes.append
    return h


def test_expiry_is_the_deliveries_and_goes_to_the_one_status_path() -> None:
    changes: list[StatusChange] = []
    wall = [WALL]
    h = hub(changes, wall)
    assert not h.add_pending(notification("n1", ttl_s=5), WALL)  # offline: nothing sent
    h.add_pending(notification("n0", ttl_s=0), WALL)  # expired at acceptance
    assert [(c.status, [n.id for n in c.notifications]) for c in changes] == [
        (Status.EXPIRED, ["n0"])
    ]
    h.tick(WALL + 4.9)
    assert len(changes) == 1
    h.tick(WALL + 5)
    assert [(c.status, [n.id for n in c.notifications], c.at) for c in changes[1:]] == [
        (Status.EXPIRED, ["n1"], WALL + 5)
    ]


def test_a_cancel_the_store_could_not_take_holds_and_is_written_when_tried_again() -> None:
    async def main() -> None:
        changes: list[StatusChange] = []
        h = hub(changes, [WALL])
        n = notification("n1")
        h.add_pending(n, WALL)

        async def refused() -> None:
            with pytest.raises(StoreError):
                await h.cancel(n, WALL + 1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(refused)
            await trio.testing.wait_all_tasks_blocked()
            (change,) = changes
            assert change.status is Status.CANCELLED and change.receipt is not None
            change.receipt.settle(StoreError("the disk is full"))
        # Tried again: not "delivered or expired", but written again and answered.
        answers: list[bool] = []

        async def again() -> None:
            answers.append(await h.cancel(n, WALL + 2))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(again)
            await trio.testing.wait_all_tasks_blocked()
            assert [c.status for c in changes] == [Status.CANCELLED, Status.CANCELLED]
            changes[1].receipt.settle()  # type: ignore[union-attr]
        assert answers == [True]
        assert await h.cancel(n, WALL + 3) is False  # written: the store's report says it

    trio.run(main)
