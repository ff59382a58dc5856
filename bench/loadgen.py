"""Load-generator processes: AOI Clients that hold sessions and ack, server apps that push.

    python -m bench.loadgen clients --aoi2 ws://127.0.0.1:8080/aoi --first 0 --count 2500
    python -m bench.loadgen pusher --http http://127.0.0.1:8080 --key K --tokens F ...

Each runs in its own process (its memory and CPU are not the server's) on asyncio with
hand-written framing (:mod:`bench.wire`), so one process drives thousands of sessions or
pushes. The parent (``bench.server``) talks to them with JSON lines:

clients  -> ``{"event": "ready", "tokens": [...], "failed": n, "errors": {why: n}, ...}`` once every
            session said hello, got welcome and registered its app; then it acks every
            notify (all ids of one read in one ``ack``) until its stdin closes, after which
            it prints ``{"event": "done", "acked": n, "acked_in_window": n, "receipts": ...}``.
            A line ``{"start": t, "end": t}`` on stdin sets the counting window; times are
            ``time.monotonic()``, one clock for every process on the machine. A line
            ``{"stats": 1}`` is answered with ``{"event": "stats", "acked": n, ...}`` at once.
            ``distinct``/``duplicates``: notify ids seen once / seen again (none are expected).
pusher   -> ``{"event": "done", "statuses": {...}, "accepted": {id: t_201}?, ...}`` at ``--end``
            (a line ``{"end": t}`` on stdin moves ``--end``), or, closed loop with ``--count``,
            once that many pushes are answered.

The message-level parts (what a session sends, what a push is) are the AOI ones; a
comparison with another broker swaps those and keeps the process protocol and the stats.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from .machine import raise_nofile
from .wire import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    WireError,
    client_frame,
    http_request,
    http_responses,
    server_frames,
    upgrade_request,
    upgrade_response,
)

CONNECTING_AT_ONCE = 256


def emit(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# --- AOI Clients -------------------------------------------------------------------------


class Stats:
    def __init__(self, record: bool) -> None:
        self.record = record
        self.window = (float("inf"), float("inf"))
        self.acked = 0
        self.acked_in_window = 0
        self.lost = 0  # sessions closed after they registered
        self.receipts: dict[str, tuple[float, float]] = {}  # id -> (received, sent per payload)
        self.seen: set[str] = set()  # every notify id received
        self.duplicates = 0  # notifies whose id was received before

    def counts(self) -> dict[str, int]:
        return {
            "acked": self.acked, "acked_in_window": self.acked_in_window,
            "distinct": len(self.seen), "duplicates": self.duplicates, "sessions_lost": self.lost,
        }  # fmt: skip


class Session(asyncio.Protocol):
    """One AOI-2 session: hello, register one app, then ack whatever arrives."""

    def __init__(self, host: str, path: str, hello: bytes, app_id: str, stats: Stats) -> None:
        self.host, self.path, self.hello, self.app_id, self.stats = host, path, hello, app_id, stats
        self.buffer = bytearray()
        self.upgraded = False
        self.registered: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.mask = os.urandom(4)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(upgrade_request(self.host, self.path, "aoi.v1"))

    def send(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        text = json.dumps(message, separators=(",", ":")).encode()
        self.transport.write(client_frame(text, TEXT, self.mask))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buffer += data
        try:
            if not self.upgraded:
                if not upgrade_response(self.buffer):
                    return
                self.upgraded = True
                self.transport.write(client_frame(self.hello, TEXT, self.mask))  # type: ignore[union-attr]
            frames = server_frames(self.buffer)
        except WireError as exc:
            self.fail(str(exc))
            return
        ids = []
        for opcode, payload in frames:
            if opcode == TEXT:
                message = json.loads(payload)
                kind = message["type"]
                if kind == "notify":
                    ids.append(message["id"])
                    if message["id"] in self.stats.seen:
                        self.stats.duplicates += 1
                    else:
                        self.stats.seen.add(message["id"])
                    if self.stats.record:
                        sent = float(message["payload"].partition(" ")[0])
                        self.stats.receipts[message["id"]] = (now, sent)
                elif kind == "welcome":
                    self.send({"type": "register", "req": 1, "app_id": self.app_id})
                elif kind == "registered":
                    if not self.registered.done():
                        self.registered.set_result(message["token"])
                elif kind == "ping":
                    self.send(
                        {"type": "pong", **({"ts": message["ts"]} if "ts" in message else {})}
                    )
                elif kind != "pong":
                    self.fail(payload.decode()[:200])
            elif opcode == PING:
                self.transport.write(client_frame(payload, PONG, self.mask))  # type: ignore[union-attr]
            elif opcode == CLOSE:
                self.fail(f"closed by the server {payload[:2].hex()}")
        if ids:
            self.send({"type": "ack", "ids": ids})
            stats = self.stats
            stats.acked += len(ids)
            if stats.window[0] <= now < stats.window[1]:
                stats.acked_in_window += len(ids)

    def fail(self, why: str) -> None:
        if not self.registered.done():
            self.registered.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.registered.done():
            self.registered.set_exception(ConnectionError(f"connection lost: {exc}"))
        elif not self.registered.cancelled() and self.registered.exception() is None:
            self.stats.lost += 1


async def run_clients(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    url = urlsplit(args.aoi2)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    sources = args.sources.split(",") if args.sources else [None]
    stats = Stats(args.record)
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)
    sessions: list[Session] = []
    errors: dict[str, int] = {}  # why sessions failed
    started = time.monotonic()

    async def open_one(n: int) -> str | None:
        hello = json.dumps(
            {"type": "hello", "version": 1, "client_id": f"{args.prefix}{n}",
             "credential": f"{args.secret_prefix}{n}"}, separators=(",", ":"),
        ).encode()  # fmt: skip
        source = sources[n % len(sources)]
        async with gate:
            try:
                _, session = await loop.create_connection(
                    lambda: Session(url.netloc, url.path or "/aoi", hello, args.app_id, stats),
                    host, port, local_addr=None if source is None else (source, 0),
                )  # fmt: skip
                sessions.append(session)
                return await asyncio.wait_for(session.registered, 60)
            except (OSError, ConnectionError, TimeoutError) as error:
                why = f"{type(error).__name__}: {error}"[:120]
                errors[why] = errors.get(why, 0) + 1
                return None

    tokens = await asyncio.gather(
        *(open_one(n) for n in range(args.first, args.first + args.count))
    )
    found = [t for t in tokens if t is not None]
    seconds = round(time.monotonic() - started, 3)
    emit({
        "event": "ready", "tokens": found, "failed": len(tokens) - len(found), "seconds": seconds,
        "errors": errors,
    })  # fmt: skip

    done = asyncio.Event()

    def read_commands() -> None:
        for line in sys.stdin:
            command = json.loads(line)
            if "start" in command:
                loop.call_soon_threadsafe(
                    setattr, stats, "window", (command["start"], command["end"])
                )
            if "stats" in command:
                loop.call_soon_threadsafe(lambda: emit({"event": "stats", **stats.counts()}))
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=read_commands, daemon=True).start()
    await done.wait()
    receipts = {i: list(r) for i, r in stats.receipts.items()} if stats.record else None
    emit({"event": "done", **stats.counts(), "receipts": receipts})
    for session in sessions:
        if session.transport is not None:
            session.transport.abort()


# --- server apps -------------------------------------------------------------------------


class Pushes(asyncio.Protocol):
    """One keep-alive AOI-3 connection with one push in flight at a time."""

    def __init__(self, owner: Pusher) -> None:
        self.owner = owner
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def push(self) -> None:
        assert self.transport is not None
        self.sent_at = time.monotonic()
        self.transport.write(self.owner.next_request(self.sent_at))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for status, body in http_responses(self.buffer):
            self.owner.answered(self, status, body, time.monotonic())

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.lost += 1


class Pusher:
    """Pushes round robin over ``tokens``: as fast as the answers come (``rate`` 0: each
    connection sends its next push when the last one is answered) or at a fixed rate."""

    def __init__(self, args: argparse.Namespace, tokens: list[str]) -> None:
        url = urlsplit(args.http)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.args = args
        headers = f"Authorization: Bearer {args.key}\r\nContent-Type: application/json\r\n"
        self.heads = [(f"/v1/push/{t}", headers) for t in tokens]
        self.turn = itertools.cycle(range(len(tokens)))
        self.padding = "x" * max(0, args.payload_bytes - 18)
        self.statuses: Counter[int] = Counter()
        self.in_window = 0
        self.accepted: dict[str, float] = {}
        self.round_trips: list[float] = []
        self.lost = 0
        self.idle: list[Pushes] = []
        self.late = 0  # fixed rate: pushes that found no idle connection on time
        self.sent = 0
        self.answers = 0
        self.all_answered = asyncio.Event()  # closed loop with --count: every push answered

    def more(self) -> bool:
        """Whether a closed loop may send another push (``--count`` 0: no limit)."""
        return not self.args.count or self.sent < self.args.count

    def next_request(self, now: float) -> bytes:
        self.sent += 1
        target, headers = self.heads[next(self.turn)]
        body = f'{{"payload":"{now:.6f} {self.padding}","ttl_s":600}}'.encode()
        return http_request("POST", self.host, target, headers, body)

    def answered(self, connection: Pushes, status: int, body: bytes, now: float) -> None:
        self.statuses[status] += 1
        self.answers += 1
        args = self.args
        if args.count and self.answers >= args.count:
            self.all_answered.set()
        if args.start <= now < args.end:
            self.in_window += status == 201
            if args.record:
                self.round_trips.append(now - connection.sent_at)
                if status == 201:
                    self.accepted[json.loads(body)["id"]] = now
        if args.rate == 0 and now < args.end and self.more():
            connection.push()
        else:
            self.idle.append(connection)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        connections = []
        for _ in range(self.args.connections):
            _, connection = await loop.create_connection(lambda: Pushes(self), self.host, self.port)
            connections.append(connection)
        await asyncio.sleep(max(0.0, self.args.begin - time.monotonic()))
        if self.args.rate == 0:
            for connection in connections:
                if self.more():
                    connection.push()
            if self.args.count:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, self.args.end - time.monotonic())):
                        await self.all_answered.wait()
            else:
                await asyncio.sleep(max(0.0, self.args.end - time.monotonic()))
        else:
            self.idle = list(connections)
            await self.paced(self.args.rate)
        await asyncio.sleep(0.5)  # the last answers

    async def paced(self, rate: float) -> None:
        begin, sent = time.monotonic(), 0
        while (now := time.monotonic()) < self.args.end:
            due = int((now - begin) * rate) - sent
            for _ in range(due):
                if not self.idle:
                    self.late += 1
                    continue
                self.idle.pop().push()
            sent += due
            await asyncio.sleep(0.0005)


async def run_pusher(args: argparse.Namespace) -> None:
    with open(args.tokens) as f:
        tokens = json.load(f)
    pusher = Pusher(args, tokens)
    loop = asyncio.get_running_loop()

    def read_commands() -> None:  # {"end": t}: stop at t instead (a storm's unknown length)
        for line in sys.stdin:
            command = json.loads(line)
            if "end" in command:
                loop.call_soon_threadsafe(setattr, args, "end", command["end"])

    threading.Thread(target=read_commands, daemon=True).start()
    await pusher.run()
    trips = sorted(pusher.round_trips)
    emit({
        "event": "done", "sent": pusher.sent, "statuses": dict(pusher.statuses),
        "accepted_in_window": pusher.in_window,
        "late": pusher.late, "lost_connections": pusher.lost,
        "accepted": pusher.accepted if args.record else None,
        "round_trip_ms": percentiles(trips) if trips else None,
    })  # fmt: skip


def percentiles(values: Sequence[float], scale: float = 1000.0) -> dict[str, float]:
    """p50, p99, p999, max and n, times ``scale`` (s to ms): the value at index int(q * n) of
    the sorted values; both benchmarks' figures (AOI's and Mosquitto's) rank alike with it."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(quantile: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * scale, 3)

    return {"p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "max": at(1.0), "n": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role", required=True)
    clients = sub.add_parser("clients", help="hold AOI-2 sessions and ack everything")
    clients.add_argument("--aoi2", required=True)
    clients.add_argument("--first", type=int, default=0)
    clients.add_argument("--count", type=int, required=True)
    clients.add_argument("--prefix", default="dev-", help="client id = prefix + number")
    clients.add_argument("--secret-prefix", default="secret-", help="credential likewise")
    clients.add_argument("--app-id", default="com.example.bench")
    clients.add_argument("--sources", default="", help="comma-separated source addresses")
    clients.add_argument("--record", action="store_true", help="keep each notify's receipt time")
    pusher = sub.add_parser("pusher", help="push over keep-alive AOI-3 connections")
    pusher.add_argument("--http", required=True)
    pusher.add_argument("--key", required=True)
    pusher.add_argument("--tokens", required=True, help="JSON file: a list of tokens")
    pusher.add_argument("--connections", type=int, default=32)
    pusher.add_argument("--rate", type=float, default=0, help="pushes/s; 0 = closed loop")
    pusher.add_argument("--begin", type=float, default=0, help="monotonic time to start")
    pusher.add_argument("--start", type=float, required=True, help="counting window start")
    pusher.add_argument("--end", type=float, required=True, help="counting window end; stop")
    pusher.add_argument("--payload-bytes", type=int, default=64)
    pusher.add_argument("--record", action="store_true", help="keep each 201's time")
    pusher.add_argument(
        "--count", type=int, default=0, help="closed loop: stop after this many pushes (0: none)"
    )
    args = parser.parse_args()
    raise_nofile()
    asyncio.run(run_clients(args) if args.role == "clients" else run_pusher(args))


if __name__ == "__main__":
    main()
