"""Redis clients under trio, side by side against one redis-server: the store's choice.

    python -m bench.redis_clients [--seconds 1.5] [--out reports/redis-clients.json]

Candidates, each in a process of its own, one after the other, against the same
redis-server (``scripts/redis``, ``appendfsync everysec`` so that the disk does not set the
pace of writes):

- ``aoi``: :mod:`aoi.server.store.redis_client`, one connection shared by all tasks,
  hiredis packing and parsing;
- ``coredis``: coredis on anyio, run on trio, with its connection pool;
- ``redio``: a trio-native client with a pure-Python parser;
- ``redis-py-thread``: redis-py's synchronous client (hiredis parser) in trio's worker
  threads, a connection per thread from its pool.

Workloads (each for ``--seconds``):

- ``batch``: one pipeline of 100 x (HSET + ZADD + XADD) at a time, a notification's writes;
- ``get``: one GET at a time: the round trip;
- ``get_x100``: 100 tasks doing GETs, one at a time each: concurrent callers;
- ``pubsub``: messages received on one channel from a separate process that publishes as
  fast as Redis takes it.

Per workload: operations per second and the candidate's CPU (user + system of its process)
per command or message; ratios are against ``aoi``. Prints the table; writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import trio

from .machine import machine_busy_since, machine_jiffies
from .redis_server import redis_server

CANDIDATES = ("aoi", "coredis", "redio", "redis-py-thread")
WORKLOADS = ("batch", "get", "get_x100", "pubsub")
BATCH = 100  # notifications per pipeline: 3 commands each
PAYLOAD = b'{"title":"New message","from":"alice","unread":3,"body":"' + b"x" * 140 + b'"}'
CHANNEL = "aoi:node:b"
Command = tuple[Any, ...]
Receive = Callable[[], Awaitable[bytes]]


def batch_commands(round: int) -> list[Command]:
    commands: list[Command] = []
    for i in range(BATCH):
        id = f"n-{round}-{i}"
        commands += [
            ("HSET", f"{{device-0042}}:n:{id}", "payload", PAYLOAD, "status", "queued"),
            ("ZADD", "{device-0042}:queue", round * BATCH + i, id),
            ("XADD", "{device-0042}:events", "MAXLEN", "~", 10000, "*", "id", id),
        ]
    return commands


class Candidate(Protocol):
    async def pipeline(self, commands: Sequence[Command]) -> None: ...

    async def get(self, key: str) -> None: ...

    def subscribed(self, channel: str) -> AbstractAsyncContextManager[Receive]:
        """Subscribe; inside, a call that returns the next message."""


# --- the candidates ------------------------------------------------------------------


class Aoi:
    def __init__(self, redis: Any, url: str) -> None:
        self.redis, self.url = redis, url

    async def pipeline(self, commands: Sequence[Command]) -> None:
        await self.redis.pipeline(commands)

    async def get(self, key: str) -> None:
        await self.redis.execute("GET", key)

    @asynccontextmanager
    async def subscribed(self, channel: str) -> AsyncIterator[Receive]:
        from aoi.server.store.redis_pubsub import Message, open_subscription

        async with open_subscription(self.url, [channel]) as subscription:

            async def receive() -> bytes:
                event = await subscription.receive()
                assert isinstance(event, Message)
                return event.data

            yield receive


class Coredis:
    def __init__(self, client: Any) -> None:
        self.client = client

    async def pipeline(self, commands: Sequence[Command]) -> None:
        from coredis.tokens import PureToken

        async with self.client.pipeline(transaction=False) as pipe:
            for command in commands:
                if command[0] == "HSET":
                    pipe.hset(command[1], dict(zip(command[2::2], command[3::2], strict=True)))
                elif command[0] == "ZADD":
                    pipe.zadd(command[1], {command[3]: command[2]})
                else:
                    pipe.xadd(
                        command[1], {command[6]: command[7]}, trim_strategy=PureToken.MAXLEN,
                        threshold=command[4], trim_operator=PureToken.APPROXIMATELY,
                    )  # fmt: skip

    async def get(self, key: str) -> None:
        await self.client.get(key)

    @asynccontextmanager
    async def subscribed(self, channel: str) -> AsyncIterator[Receive]:
        async with self.client.pubsub(channels=[channel], ignore_subscribe_messages=True) as ps:
            messages = ps.__aiter__()

            async def receive() -> bytes:
                return (await messages.__anext__())["data"]  # type: ignore[no-any-return]

            yield receive


class Redio:
    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def pipeline(self, commands: Sequence[Command]) -> None:
        db = self.redis()
        for command in commands:
            db._command(*command)
        await db

    async def get(self, key: str) -> None:
        await self.redis().get(key)

    @asynccontextmanager
    async def subscribed(self, channel: str) -> AsyncIterator[Receive]:
        pubsub = self.redis.pubsub(channel)
        await pubsub.connect()

        async def receive() -> bytes:
            return await pubsub  # type: ignore[no-any-return]

        yield receive


class RedisPyThread:
    def __init__(self, client: Any) -> None:
        self.client = client

    def _pipeline(self, commands: Sequence[Command]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        pipe.execute()

    async def pipeline(self, commands: Sequence[Command]) -> None:
        await trio.to_thread.run_sync(self._pipeline, commands)

    async def get(self, key: str) -> None:
        await trio.to_thread.run_sync(self.client.get, key)

    @asynccontextmanager
    async def subscribed(self, channel: str) -> AsyncIterator[Receive]:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        await trio.to_thread.run_sync(pubsub.subscribe, channel)
        batch: list[bytes] = []

        async def receive() -> bytes:
            # A blocking read per message would cost a thread hop each: read what is there
            # in the thread, hop back once per batch.
            while not batch:
                batch.extend(reversed(await trio.to_thread.run_sync(_drain, pubsub)))
            return batch.pop()

        try:
            yield receive
        finally:
            pubsub.close()


def _drain(pubsub: Any) -> list[bytes]:
    first = pubsub.get_message(timeout=1.0)
    batch = [] if first is None else [first["data"]]
    while len(batch) < 1000 and (message := pubsub.get_message(timeout=0)) is not None:
        batch.append(message["data"])
    return batch


@asynccontextmanager
async def open_candidate(name: str, url: str) -> AsyncIterator[Candidate]:
    if name == "aoi":
        from aoi.server.store.redis_client import open_redis

        async with open_redis(url) as client:
            yield Aoi(client, url)
    elif name == "coredis":
        import coredis

        async with coredis.Redis.from_url(url, decode_responses=False) as client:
            yield Coredis(client)
    elif name == "redio":
        import redio  # type: ignore[import-untyped]

        yield Redio(redio.Redis(url))
    else:
        import redis as redis_py

        pool = redis_py.ConnectionPool.from_url(url, max_connections=200)
        try:
            yield RedisPyThread(redis_py.Redis(connection_pool=pool))
        finally:
            pool.disconnect()


# --- the workloads, in a worker process ----------------------------------------------


async def timed(
    seconds: float, loops: int, step: Callable[[int], Awaitable[int]]
) -> dict[str, Any]:
    """Run ``loops`` tasks of ``step(round)`` (each returns how many operations it did) for
    ``seconds``; operations per second and this process's CPU per operation."""
    operations = 0

    async def loop(deadline: float) -> None:
        nonlocal operations
        round = 0
        while time.perf_counter() < deadline:
            done = await step(round)  # not ``operations += await ...``: it would lose counts
            operations += done
            round += 1

    await step(-1)  # connect and warm up outside the window
    cpu, wall = time.process_time(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(loops):
            nursery.start_soon(loop, wall + seconds)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return figures(operations, wall, cpu)


def figures(operations: int, wall: float, cpu: float) -> dict[str, Any]:
    return {
        "ops_per_s": operations / wall,
        "cpu_us_per_op": cpu / operations * 1e6,
        "ops": operations,
    }


async def receive(candidate: Candidate, url: str, seconds: float) -> dict[str, Any]:
    """Messages received while another process publishes for ``seconds``."""
    count = 0
    async with candidate.subscribed(CHANNEL) as next_message:
        publisher = subprocess.Popen(
            [sys.executable, "-m", "bench.redis_clients", "--publish", url, str(seconds)]
        )
        try:
            assert await next_message() == PAYLOAD
            cpu, wall = time.process_time(), time.perf_counter()
            with trio.move_on_after(seconds + 10):  # the publisher stops after ``seconds``
                while await next_message() == PAYLOAD:
                    count += 1
                    if count % 1000 == 0 and publisher.poll() is not None:
                        break  # the rest may still be on the way: count up to here
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        finally:
            publisher.kill()
            publisher.wait()
    return figures(count, wall, cpu)


async def worker(name: str, url: str, seconds: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with open_candidate(name, url) as candidate:

        async def batch(round: int) -> int:
            await candidate.pipeline(batch_commands(round))
            return 3 * BATCH

        async def get(round: int) -> int:
            await candidate.get("{device-0042}:session")
            return 1

        results["batch"] = await timed(seconds, 1, batch)
        results["get"] = await timed(seconds, 1, get)
        results["get_x100"] = await timed(seconds, 100, get)
        results["pubsub"] = await receive(candidate, url, seconds)
    return results


def publish(url: str, seconds: float) -> None:
    """Publish as fast as Redis takes it, in pipelines of 1000, on a plain socket."""
    host, port = url.removeprefix("redis://").split(":")
    message = f"*3\r\n$7\r\nPUBLISH\r\n${len(CHANNEL)}\r\n{CHANNEL}\r\n${len(PAYLOAD)}\r\n".encode()
    batch = (message + PAYLOAD + b"\r\n") * 1000
    with socket.create_connection((host, int(port))) as s:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            s.sendall(batch)
            replies = 0
            while replies < 1000:
                replies += s.recv(65536).count(b"\r\n")


# --- the run ---------------------------------------------------------------------------


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("hiredis", "coredis", "redio", "redis", "trio", "anyio"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "missing"
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    found["redis-server"] = server.stdout.split()[2].removeprefix("v=")
    return found


def run(seconds: float, candidates: Sequence[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as directory,
        redis_server(Path(directory), "everysec") as server,
    ):
        # A subscriber slower than the publisher must not be cut off by Redis.
        subprocess.run(
            ["redis-cli", "-p", server.url.rsplit(":", 1)[1], "CONFIG", "SET",
             "client-output-buffer-limit", "pubsub 0 0 0"],
            check=True, capture_output=True,
        )  # fmt: skip
        for name in candidates:
            print(f"bench.redis_clients: {name}", file=sys.stderr)
            busy = machine_jiffies()
            command = ["--worker", name, server.url, str(seconds)]
            done = subprocess.run(
                [sys.executable, "-m", "bench.redis_clients", *command],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                results[name] = {"error": done.stderr.strip().splitlines()[-1:]}
                continue
            results[name] = json.loads(done.stdout)
            results[name]["machine_busy_share"] = round(machine_busy_since(busy), 3)
    return results


def table(results: dict[str, Any]) -> str:
    base = results.get("aoi", {})
    lines = [
        "| workload | candidate | ops/s | CPU µs/op | ops/s vs aoi | CPU vs aoi |",
        "|---|---|---|---|---|---|",
    ]
    for workload in WORKLOADS:
        for name, figures in results.items():
            if workload not in figures:
                lines.append(f"| {workload} | {name} | error: {figures.get('error')} | | | |")
                continue
            f, b = figures[workload], base.get(workload)
            rate, cpu = f["ops_per_s"], f["cpu_us_per_op"]
            ratios = f"{rate / b['ops_per_s']:.2f} | {cpu / b['cpu_us_per_op']:.2f}" if b else " | "
            lines.append(f"| {workload} | {name} | {rate:,.0f} | {cpu:.2f} | {ratios} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--only", nargs="+", choices=CANDIDATES, default=list(CANDIDATES))
    parser.add_argument("--out", type=Path, default=Path("reports/redis-clients.json"))
    hidden = argparse.SUPPRESS
    parser.add_argument("--worker", nargs=3, metavar=("NAME", "URL", "S"), help=hidden)
    parser.add_argument("--publish", nargs=2, metavar=("URL", "S"), help=hidden)
    args = parser.parse_args()
    if args.worker:
        name, url, seconds = args.worker
        print(json.dumps(trio.run(worker, name, url, float(seconds))))
        return
    if args.publish:
        publish(args.publish[0], float(args.publish[1]))
        return
    results = run(args.seconds, args.only)
    report = {
        "command": " ".join(["python -m bench.redis_clients", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions(),
        "cpus": os.cpu_count(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(json.dumps(report["versions"]))


if __name__ == "__main__":
    main()
