"""Store throughput: notifications committed per second by many concurrent callers.

    python -m bench.store [--seconds 3] [--callers 1000] [--synchronous normal full]

Each caller adds notifications one after the other, as AOI-3 requests do; a notification
counts once its ``add_notification`` returned, that is once it is durable.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from aoi.server.store import SqliteStore, StoredNotification
from aoi.server.store.sqlite import Synchronous

TOKEN = "Zq3x9Kd0aB7cLmN2pQ4rS6"
PAYLOAD = '{"title":"New message","from":"alice","unread":3}'


async def measure(
    path: Path, synchronous: Synchronous, callers: int, seconds: float
) -> dict[str, Any]:
    store = SqliteStore(path, synchronous=synchronous)
    latencies: list[float] = []

    async def caller(index: int, deadline: float) -> None:
        sequence = 0
        while time.perf_counter() < deadline:
            now = time.time()
            notification = StoredNotification(
                id=f"n-{index}-{sequence}", token=TOKEN, client_id="device-0042",
                app_id="com.example.chat", payload=PAYLOAD, priority="normal", ttl_s=3600,
                created_at=now, expires_at=now + 3600, collapse_key=None, pushed_by="chat-backend",
            )  # fmt: skip
            start = time.perf_counter()
            await store.add_notification(notification)
            latencies.append(time.perf_counter() - start)
            sequence += 1

    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        start = time.perf_counter()
        cpu_start = time.process_time()
        async with trio.open_nursery() as callers_nursery:
            for index in range(callers):
                callers_nursery.start_soon(caller, index, start + seconds)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        nursery.cancel_scope.cancel()
    latencies.sort()
    return {
        "synchronous": synchronous,
        "callers": callers,
        "ops_per_s": round(store.ops_committed / elapsed),
        "commits_per_s": round(store.commits / elapsed),
        "ops_per_commit": round(store.ops_committed / max(store.commits, 1), 1),
        # Both threads' CPU time: what a notification costs whatever else runs on the machine.
        "cpu_us_per_op": round(cpu / max(store.ops_committed, 1) * 1e6, 1),
        "latency_ms_p50": round(latencies[len(latencies) // 2] * 1000, 2),
        "latency_ms_p99": round(latencies[len(latencies) * 99 // 100] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--callers", type=int, default=1000)
    parser.add_argument("--synchronous", nargs="+", default=["normal", "full"])
    parser.add_argument("--dir", help="where the database goes (default: a temporary folder)")
    args = parser.parse_args()
    results = []
    for synchronous in args.synchronous:
        with tempfile.TemporaryDirectory(dir=args.dir) as folder:
            path = Path(folder) / "bench.db"
            results.append(trio.run(measure, path, synchronous, args.callers, args.seconds))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
