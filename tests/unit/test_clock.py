"""The server's clock: real time by default, virtual time for tests, and the two related."""

from __future__ import annotations

import time

import trio
import trio.testing

from aoi.core.delivery import Delivery, Expired
from aoi.server.clock import Clock
from aoi.server.store import StoredNotification

EPOCH = 1_800_000_000.0


def test_the_default_clock_reads_the_system_and_trio() -> None:
    async def main() -> None:
        clock = Clock()
        before = time.time()
        assert before <= clock.wall() <= time.time()
        assert trio.current_time() <= clock.now() <= trio.current_time()
        assert abs(clock.trio_time_at(clock.wall() + 5) - (trio.current_time() + 5)) < 0.1

    trio.run(main)


def test_a_following_clock_moves_with_a_mock_clock() -> None:
    async def main() -> None:
        clock = Clock.following_trio(EPOCH)
        start = clock.wall()
        assert start == EPOCH + trio.current_time()
        await trio.sleep(3600)
        assert clock.wall() == start + 3600
        assert clock.trio_time_at(clock.wall() + 10) == clock.now() + 10

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_an_hour_of_ttl_passes_in_virtual_time() -> None:
    """What a server task does with the delivery core's deadline: sleep until it, tick."""

    async def main() -> list[object]:
        clock = Clock.following_trio(EPOCH)
        delivery: Delivery[StoredNotification] = Delivery()
        now = clock.wall()
        n = StoredNotification(
            id="n1", token="T" * 22, client_id="dev-1", app_id="com.example.chat",
            payload="hi", priority="normal", ttl_s=3600, created_at=now, expires_at=now + 3600,
            collapse_key=None, pushed_by="chat",
        )  # fmt: skip
        assert delivery.push(n, now) == []
        events: list[object] = []
        while not events:
            deadline = delivery.deadline()
            assert deadline is not None
            await trio.sleep_until(clock.trio_time_at(deadline))
            events = list(delivery.tick(clock.wall()))
        assert 3600 <= clock.wall() - now < 3600.001  # expired once its TTL is reached
        return events

    events = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [type(e) for e in events] == [Expired]
