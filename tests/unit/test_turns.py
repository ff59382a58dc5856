"""The waiting room of untrusted connections: real sockets, woken a few per batch."""

from __future__ import annotations

import select
import socket
from collections import Counter

import pytest
import trio
import trio.testing

from aoi.net.turns import Turns, WaitingRoom

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="the room needs epoll")


class Batches(trio.abc.Instrument):
    """Counts trio's batches: each one follows a poll for I/O."""

    def __init__(self) -> None:
        self.count = 0

    def after_io_wait(self, timeout: float) -> None:
        self.count += 1


def test_sockets_ready_at_once_are_woken_a_few_per_batch() -> None:
    batches = Batches()
    woke_in: list[int] = []
    pairs = [socket.socketpair() for _ in range(40)]

    async def main() -> None:
        room = WaitingRoom(per_batch=4)

        async def wait(sock: socket.socket) -> None:
            await room.wait_readable(sock)
            woke_in.append(batches.count)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(room.run)
            for ours, _ in pairs:
                nursery.start_soon(wait, ours)
            await trio.testing.wait_all_tasks_blocked()
            for _, theirs in pairs:
                theirs.send(b"hello")
            with trio.fail_after(5):
                while len(woke_in) < len(pairs):
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main, instruments=[batches])
    finally:
        for a, b in pairs:
            a.close()
            b.close()
    per_batch = Counter(woke_in)
    assert sum(per_batch.values()) == 40
    assert max(per_batch.values()) <= 4  # 40 ready at once, 4 a batch


def test_a_cancelled_wait_leaves_the_room_and_a_hang_up_wakes() -> None:
    a, b = socket.socketpair()

    async def main() -> None:
        room = WaitingRoom()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(room.run)
            with trio.move_on_after(0.05) as scope:
                await room.wait_readable(a)
            assert scope.cancelled_caught
            b.close()  # the peer hangs up: the socket reads b"" now
            with trio.fail_after(5):
                await room.wait_readable(a)  # registers again: the cancelled wait left
            assert a.recv(10) == b""
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        a.close()


def test_a_trusted_ticket_waits_as_trio_does() -> None:
    a, b = socket.socketpair()

    async def main() -> None:
        ticket = Turns().ticket()
        ticket.finish()
        b.send(b"x")
        with trio.fail_after(5):  # the room's task is not running: trio's own wait
            await ticket.wait_readable(trio.socket.from_stdlib_socket(a))

    try:
        trio.run(main)
    finally:
        a.close()
        b.close()
