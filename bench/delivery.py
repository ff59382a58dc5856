"""CPU per notification of the server's delivery rules alone: the delivery core, and the hub
around it.

    python -m bench.delivery [--seconds 2]

One notification for a connected client, from stored to acked: it is queued, handed out
as a ``notify`` (built, not encoded: the codec and the socket are the same for both), acked,
and finished as delivered. ``core`` is :class:`aoi.core.delivery.Delivery` alone (``push``
then ``ack``); ``hub`` is what the server runs for the same steps, isolated from trio and
the store: ``Hub.add_pending`` (what ``Hub.accept`` does once the store returned), which
pushes into the client's delivery and hands the ``notify`` to a session that only keeps the
message, and ``Hub.acked``, which acks and records the status change. The difference is
what carrying out the core's events costs. Two rhythms:
``one_by_one`` (push one, ack it) and ``window`` (push 64, one ack of all 64). CPU time
(``time.process_time``) in microseconds per notification, the best of five rounds each,
the two taking turns.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from aoi.core.delivery import Delivery
from aoi.core.messages import Message
from aoi.core.session import State
from aoi.server.clock import Clock
from aoi.server.hub import Hub, StatusChange
from aoi.server.link import Client, Link
from aoi.server.store import StoredNotification

TOKEN = "Zq3x9Kd0aB7cLmN2pQ4rS6"
WALL = 1_800_000_000.0
BATCH = 64


def records(count: int) -> list[StoredNotification]:
    """Made ahead, so that making them is not measured; each run finishes them all, so the
    same ones can be pushed again."""
    return [
        StoredNotification(
            id=f"n-{i:012d}",
            token=TOKEN,
            client_id="device-1",
            app_id="com.example.chat",
            payload='{"title":"New message","unread":3}',
            priority="high" if i % 8 == 0 else "normal",
            ttl_s=3600,
            created_at=WALL + i * 1e-4,
            expires_at=WALL + 3600 + i * 1e-4,
            collapse_key=None,
            pushed_by="chat",
        )
        for i in range(count)
    ]


class KeepingSession:
    """A ServerSession's send() without the codec: the hub's cost, not the encoder's."""

    state = State.ESTABLISHED

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, message: Message, now: float) -> None:
        self.sent.append(message)


def core(records: list[StoredNotification], batch: int) -> Callable[[], int]:
    delivery: Delivery[StoredNotification] = Delivery()
    delivery.connected(object(), WALL)

    def run() -> int:
        done = 0
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            ids = []
            for n in chunk:
                for event in delivery.push(n, n.created_at):
                    ids.append(event.id)  # type: ignore[union-attr]  # all notifies here
            for event in delivery.ack(ids, chunk[-1].created_at):
                done += len(event.notifications)  # type: ignore[union-attr]  # one Delivered
        return done

    return run


def hub(records: list[StoredNotification], batch: int) -> Callable[[], int]:
    h = Hub(None, server_id="a", endpoint_base="http://a", max_apps=16)  # type: ignore[arg-type]
    wall = [WALL]
    h.clock = Clock(wall=lambda: wall[0], now=lambda: 0.0)
    session = KeepingSession()
    link = Link(session, client_id="device-1")  # type: ignore[arg-type]
    h.clients["device-1"] = Client("device-1", link=link)
    statuses: list[StatusChange] = []
    h.record = statuses.append
    h.deliver = lambda link: None  # the AOI-2 endpoint's, which writes the frames

    def run() -> int:
        done = 0
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            for n in chunk:
                wall[0] = n.created_at
                h.add_pending(n, n.created_at)
            ids = tuple(m.id for m in session.sent)  # type: ignore[attr-defined]
            session.sent.clear()
            h.acked("device-1", ids)
            done += sum(len(change.notifications) for change in statuses)
            statuses.clear()
        return done

    return run


ROUNDS = 5
COUNT = 20_000


def cpu_per_notification(run: Callable[[], int], seconds: float) -> float:
    """One round: ``run`` again and again for about ``seconds`` of CPU; microseconds each."""
    spent, done = 0.0, 0
    while spent < seconds:
        start = time.process_time()
        finished = run()
        spent += time.process_time() - start
        assert finished == COUNT, f"{finished} of {COUNT} delivered"
        done += finished
    return spent / done * 1e6


def measure(seconds: float) -> dict[str, Any]:
    """Rounds of the hub and the core in turn, so that a busy moment of a shared machine
    falls on both; the best round of each."""
    pushed = records(COUNT)
    result: dict[str, Any] = {}
    for rhythm, batch in (("one_by_one", 1), ("window", BATCH)):
        runs = {"hub": hub(pushed, batch), "core": core(pushed, batch)}
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(ROUNDS):
            for name, run in runs.items():
                best[name] = min(best[name], cpu_per_notification(run, seconds / ROUNDS / 2))
        result[rhythm] = {
            "hub_us": round(best["hub"], 2),
            "core_us": round(best["core"], 2),
            "core_over_hub": round(best["core"] / best["hub"], 2),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    print(json.dumps(measure(parser.parse_args().seconds)))


if __name__ == "__main__":
    main()
