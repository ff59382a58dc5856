"""The daemon's pacing of the garbage collector, in virtual time."""

from __future__ import annotations

import gc
import weakref

import trio
import trio.testing

from aoi.server.collector import FULL_EVERY_S, NEVER, pace_collections


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> Node:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a


def test_the_oldest_generation_is_collected_on_a_quiet_second_and_restored_after() -> None:
    before = gc.get_threshold()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pace_collections)
            await trio.sleep(0.5)
            assert gc.get_threshold()[2] == NEVER
            assert gc.get_freeze_count() > 0
            held = [cycle()]
            garbage = weakref.ref(held[0])
            gc.collect(1)  # as CPython does on its own: a live cycle moves to the oldest
            held.clear()
            gc.collect(1)
            assert garbage() is not None  # garbage now, which only a full collection finds
            await trio.sleep(FULL_EVERY_S + 1)
            assert garbage() is None
            nursery.cancel_scope.cancel()

    gc.disable()  # no automatic collection may find the cycle first
    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        gc.enable()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
