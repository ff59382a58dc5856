"""CPU per notification of the server's delivery rules alone: the delivery core beside the hub.

    python -m bench.delivery [--seconds 2]

One notification for a connected client, from stored to acked: it is queued, handed out
as a ``notify`` (built, not encoded: the codec and the socket are the same for both), acked,
and finished as delivered. ``core`` is :class:`aoi.core.delivery.Delivery` (``push`` then
``ack``); ``hub`` is what the server runs today for the same steps, isolated from trio and
the store: ``Hub._add_pending`` (what ``Hub.accept`` does once the store returned),
``Hub.pump`` into a session that only keeps the message, ``Hub.acked`` with the status
change the AOI-2 endpoint makes of it (the core's events are that), and ``Hub.has_work``
(whether the ack made room for more). Two rhythms:
``one_by_one`` (push one, ack it) and ``window`` (push 64, one ack of all 64). CPU time
(``time.process_time``), best of three rounds, in microseconds per notification.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from aoi.core.delivery import Delivery
from aoi.core.messages import Message
from aoi.server.hub import Client, Hub, Link, StatusChange
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
    session = KeepingSession()
    link = Link(session, client_id="device-1")  # type: ignore[arg-type]
    h.clients["device-1"] = Client("device-1", link=link)
    statuses: list[StatusChange] = []

    def run() -> int:
        done = 0
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            for n in chunk:
                h._add_pending(n)
                h.pump(link, 0.0, n.created_at)
            ids = tuple(m.id for m in session.sent)  # type: ignore[attr-defined]
            session.sent.clear()
            acked = h.acked("device-1", ids)
            statuses.append(StatusChange("delivered", [n.id for n in acked], WALL))
            h.has_work(link)  # as the AOI-2 reader asks after every ack
            done += len(acked)
        statuses.clear()
        return done

    return run


def cpu_per_notification(make: Callable[[list[StoredNotification], int], Callable[[], int]],
                         batch: int, seconds: float) -> float:  # fmt: skip
    """Best of three rounds, each about ``seconds / 3`` of CPU, in microseconds."""
    count = 20_000
    pushed = records(count)
    best = float("inf")
    for _ in range(3):
        run = make(pushed, batch)
        spent, done = 0.0, 0
        while spent < seconds / 3:
            start = time.process_time()
            finished = run()
            spent += time.process_time() - start
            assert finished == count, f"{finished} of {count} delivered"
            done += finished
        best = min(best, spent / done * 1e6)
    return best


def measure(seconds: float) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for rhythm, batch in (("one_by_one", 1), ("window", BATCH)):
        hub_us = cpu_per_notification(hub, batch, seconds)
        core_us = cpu_per_notification(core, batch, seconds)
        result[rhythm] = {
            "hub_us": round(hub_us, 2),
            "core_us": round(core_us, 2),
            "core_over_hub": round(core_us / hub_us, 2),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    print(json.dumps(measure(parser.parse_args().seconds)))


if __name__ == "__main__":
    main()
