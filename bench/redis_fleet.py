"""What a fleet of AOI Server nodes pays Redis per notification: accepting it durably, and
forwarding it from the node that accepted it to the node that holds the session.

    python -m bench.redis_fleet [--seconds 2] [--out reports/redis-fleet.json]

Everything runs twice, against a redis-server started by ``scripts/redis`` with
``appendfsync always`` and then with ``everysec``, on the store's client
(:mod:`aoi.server.store.redis_client`, :mod:`aoi.server.store.redis_pubsub`).

``accept``: 64 tasks of one process each store a notification the way AOI-3 would before
its 201 (MULTI, HSET of the notification, ZADD to its client's queue, EXEC), one after the
other; notifications per second, the latency of one (p50, p99), CPU per notification.

Forwarding, two ways, each with two processes (node A sending, node B receiving):

- ``pubsub``: A PUBLISHes to B's channel; B's subscription receives. At most once: what
  is published while B is not subscribed is lost (B reconciles from the queue after a Gap).
- ``stream``: A XADDs to B's stream (capped with MAXLEN ~); B reads it with XREADGROUP and
  XACKs what it took. A message waits for B while B is away, and B's unacknowledged
  messages are read again after B restarts; every XADD is written to the append-only file.

Node A sends with 64 concurrent tasks, one command per notification, as AOI-3 requests
would. Per forwarded notification: CPU of A, of B and of redis-server (user + system), and
notifications per second received by B. The machine's busy share over each workload is
recorded beside it: three processes share its cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from aoi.server.store.redis_client import RedisClient, open_redis
from aoi.server.store.redis_pubsub import Message, open_subscription

from .machine import cpu_seconds, machine_busy_since, machine_jiffies
from .redis_server import Fsync, redis_server

FSYNCS: tuple[Fsync, ...] = ("always", "everysec")
WAYS = ("pubsub", "stream")
SENDERS = 64
CHANNEL = "aoi:node:b"
STREAM = "{aoi:node:b}:inbox"
GROUP = "nodes"
NOTIFICATION = (
    b'{"id":"n-8f1e2a4b6c8d0e2f","token":"Zq3x9Kd0aB7cLmN2pQ4rS6","app_id":"com.example.chat",'
    b'"payload":"{\\"title\\":\\"New message\\",\\"from\\":\\"alice\\",\\"unread\\":3}",'
    b'"priority":"high","ttl_s":3600,"created_at":"2026-12-03T10:00:00Z"}'
)
IDLE_S = 1.0  # node B stops after this long without a message


async def send(url: str, way: str, seconds: float) -> dict[str, Any]:
    """Node A: forward notifications for ``seconds``."""
    sent = 0
    command = (
        ("PUBLISH", CHANNEL, NOTIFICATION)
        if way == "pubsub"
        else ("XADD", STREAM, "MAXLEN", "~", 100_000, "*", "n", NOTIFICATION)
    )
    async with open_redis(url) as redis:

        async def sender(deadline: float) -> None:
            nonlocal sent
            while time.perf_counter() < deadline:
                await redis.execute(*command)
                sent += 1

        cpu, wall = time.process_time(), time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(SENDERS):
                nursery.start_soon(sender, wall + seconds)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"sent": sent, "cpu_s": cpu, "wall_s": wall}


async def receive(url: str, way: str) -> dict[str, Any]:
    """Node B: receive until nothing came for ``IDLE_S``; CPU up to the last one."""
    received = 0
    cpu = first = last = 0.0
    if way == "pubsub":
        async with open_subscription(url, [CHANNEL]) as subscription:
            print("ready", flush=True)
            while True:
                with trio.move_on_after(IDLE_S if received else 60):
                    event = await subscription.receive()
                    assert isinstance(event, Message) and event.data == NOTIFICATION
                    received += 1
                    if received == 1:
                        first, cpu = time.perf_counter(), time.process_time()
                    last = time.perf_counter()
                    continue
                break
        cpu_end = time.process_time()
    else:
        async with open_redis(url) as redis:
            await prepare_group(redis)
            print("ready", flush=True)
            while True:
                reply = await redis.execute(
                    "XREADGROUP", "GROUP", GROUP, "b", "COUNT", 1000, "BLOCK", int(IDLE_S * 1000),
                    "STREAMS", STREAM, ">",
                )  # fmt: skip
                if reply is None:
                    if received:
                        break
                    continue
                assert isinstance(reply, list) and isinstance(reply[0], list)
                entries = reply[0][1]
                assert isinstance(entries, list)
                if received == 0:
                    first, cpu = time.perf_counter(), time.process_time()
                ids = [entry[0] for entry in entries if isinstance(entry, list)]
                assert all(entry[1] == [b"n", NOTIFICATION] for entry in entries)  # type: ignore[index]
                await redis.execute("XACK", STREAM, GROUP, *ids)  # type: ignore[arg-type]
                received += len(ids)
                last = time.perf_counter()
        cpu_end = time.process_time()
    # Up to the last message: the idle wait at the end is not forwarding work.
    return {"received": received, "cpu_s": cpu_end - cpu, "wall_s": last - first}


async def prepare_group(redis: RedisClient) -> None:
    await redis.execute("DEL", STREAM)
    await redis.execute("XGROUP", "CREATE", STREAM, GROUP, "$", "MKSTREAM")


def measure(url: str, pid: int, way: str, seconds: float) -> dict[str, Any]:
    busy = machine_jiffies()
    node = [sys.executable, "-m", "bench.redis_fleet", "--node", url, way]
    with subprocess.Popen([*node, "b"], stdout=subprocess.PIPE, text=True) as b:
        assert b.stdout is not None
        assert b.stdout.readline().strip() == "ready"
        redis_cpu = cpu_seconds(pid)
        a = subprocess.run([*node, "a", str(seconds)], capture_output=True, text=True, check=True)
        sender = json.loads(a.stdout)
        receiver = json.loads(b.stdout.read())
        redis_cpu = cpu_seconds(pid) - redis_cpu
    sent, received = sender["sent"], receiver["received"]
    return {
        "sent": sent,
        "received": received,
        "received_per_s": received / max(receiver["wall_s"], sender["wall_s"]),
        "cpu_us_per_notification": {
            "node_a": sender["cpu_s"] / sent * 1e6,
            "node_b": receiver["cpu_s"] / received * 1e6,
            "redis": redis_cpu / sent * 1e6,
        },
        "machine_busy_share": round(machine_busy_since(busy), 3),
    }


async def accept(url: str, seconds: float) -> dict[str, Any]:
    """One process storing notifications as AOI-3 does before its 201."""
    latencies: list[float] = []
    async with open_redis(url) as redis:

        async def acceptor(index: int, deadline: float) -> None:
            sequence = 0
            while time.perf_counter() < deadline:
                id = f"n-{index}-{sequence}"
                start = time.perf_counter()
                await redis.transaction(
                    [
                        ("HSET", f"{{device-{index}}}:n:{id}", "payload", NOTIFICATION,
                         "status", "queued"),
                        ("ZADD", f"{{device-{index}}}:queue", sequence, id),
                    ]
                )  # fmt: skip
                latencies.append(time.perf_counter() - start)
                sequence += 1

        cpu, wall = time.process_time(), time.perf_counter()
        async with trio.open_nursery() as nursery:
            for index in range(SENDERS):
                nursery.start_soon(acceptor, index, wall + seconds)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    latencies.sort()
    return {
        "accepted": len(latencies),
        "accepted_per_s": len(latencies) / wall,
        "latency_ms": {
            "p50": latencies[len(latencies) // 2] * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000,
        },
        "cpu_us_per_notification": {"node": cpu / len(latencies) * 1e6},
    }


def run(fsync: Fsync, seconds: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as directory,
        redis_server(Path(directory), fsync) as server,
    ):
        # B must not be cut off by Redis while it catches up.
        subprocess.run(
            ["redis-cli", "-p", server.url.rsplit(":", 1)[1], "CONFIG", "SET",
             "client-output-buffer-limit", "pubsub 0 0 0"],
            check=True, capture_output=True,
        )  # fmt: skip
        print(f"bench.redis_fleet: appendfsync {fsync}: accept", file=sys.stderr)
        busy, redis_cpu = machine_jiffies(), cpu_seconds(server.pid)
        accepted = results["accept"] = trio.run(accept, server.url, seconds)
        redis_cpu = cpu_seconds(server.pid) - redis_cpu
        accepted["cpu_us_per_notification"]["redis"] = redis_cpu / accepted["accepted"] * 1e6
        accepted["machine_busy_share"] = round(machine_busy_since(busy), 3)
        for way in WAYS:
            print(f"bench.redis_fleet: appendfsync {fsync}: {way}", file=sys.stderr)
            results[way] = measure(server.url, server.pid, way, seconds)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path("reports/redis-fleet.json"))
    parser.add_argument("--node", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.node:
        url, way, role, *rest = args.node
        result = trio.run(send, url, way, float(rest[0])) if role == "a" else None
        print(json.dumps(result or trio.run(receive, url, way)))
        return
    report = {
        "command": " ".join(["python -m bench.redis_fleet", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "senders": SENDERS,
        "notification_bytes": len(NOTIFICATION),
        "results": {fsync: run(fsync, args.seconds) for fsync in FSYNCS},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
