"""Connection storm on the reference AOI Server: many AOI Clients connecting at once while
some already connected ones receive pushes at a fixed rate.

    python -m bench.aoi_storm [--clients 5000] [--steady 100] [--rate 1000]

The counterpart of :func:`bench.mqtt.storm` (same shape, same key names where a figure means
the same). One ``aoi server`` process (:func:`bench.server.server`: the SQLite store with
synchronous=FULL as shipped, overload limits out of the way as for every workload of
``bench.server``); ``steady`` sessions held by a :mod:`bench.loadgen` ``clients`` process
that acks everything and records each receipt; a ``pusher`` process pushing to them at
``rate``/s on keep-alive AOI-3 connections, from ``baseline`` seconds before the storm until
``after`` seconds after it. At the storm's instant, ``processes`` storm processes
(``python -m bench.aoi_storm connect``) open ``clients`` sessions at once from a bare epoll
loop (:mod:`bench.epoll_storm`), as for MQTT: every socket, upgrade request,
``hello`` and ``register`` is prepared beforehand, then every ``connect()`` is issued; each
client sends its WebSocket upgrade once connected, its ``hello`` after the ``101``, its
``register`` after the ``welcome``. A client is served when its ``registered`` arrives.

Reported: ``all_connected_s``, from the storm's instant until the last storm client is
registered (MQTT: CONNACK and SUBACK); ``welcome_registered_ms``, the percentiles of that per
client; and for the steady clients, per notification accepted (201) during the storm, the
time from the pusher's 201 to the client's receipt (``steady_during_storm``; the same before
the storm in ``steady_before_storm``). A push that found all of the pusher's connections
busy at its due time is not sent but counted (``late_pushes``): the rate the server sustained
during the storm shows in ``accepted_during_storm_per_s``.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import server
from .epoll_storm import Refused, client_socket, connect_all, tally
from .loadgen import percentiles
from .machine import (
    cpu_seconds,
    machine_busy_since,
    machine_jiffies,
    raise_nofile,
    tcp_counters,
    tcp_counters_since,
)
from .wire import TEXT, WireError, client_frame, server_frames, upgrade_request, upgrade_response

SOURCES = [f"127.0.0.{n}" for n in range(2, 10)]


# --- one storm process -------------------------------------------------------------------


class AoiHandshake:
    """One AOI Client of a storm: WebSocket upgrade, ``hello`` after the ``101``,
    ``register`` after the ``welcome``; served when ``registered`` arrives."""

    def __init__(self, upgrade: bytes, hello: bytes, register: bytes) -> None:
        self.upgrade, self.hello, self.register = upgrade, hello, register
        self.phase = "upgrading"  # then "hello" (waiting for welcome), "register"
        self.buffer = bytearray()

    def connected(self) -> bytes:
        return self.upgrade

    def received(self, data: bytes) -> tuple[bytes, bool]:
        self.buffer += data
        reply = b""
        try:
            if self.phase == "upgrading":
                if not upgrade_response(self.buffer):
                    return b"", False
                reply, self.phase = self.hello, "hello"
            frames = server_frames(self.buffer)
        except WireError as error:
            raise Refused(f"wire: {error}") from error
        for opcode, payload in frames:
            if opcode != TEXT:
                raise Refused(f"opcode {opcode}")
            kind = json.loads(payload).get("type")
            if kind == "welcome" and self.phase == "hello":
                reply, self.phase = reply + self.register, "register"
            elif kind == "registered" and self.phase == "register":
                return reply, True
            elif kind not in ("ping", "pong"):
                raise Refused(f"{kind} in {self.phase}")
        return reply, False


def storm_connect(
    aoi2: str,
    clients: Sequence[tuple[str, str, str | None]],
    *,
    app_id: str,
    start_at: float,
    timeout: float,
) -> tuple[array.array[float], dict[str, int], list[socket.socket]]:
    """Open every AOI-2 session of ``clients`` (client_id, credential, source) at once:
    (durations from ``start_at`` to each ``registered``, errors by kind, open sockets)."""
    url = urlsplit(aoi2)
    upgrade = upgrade_request(url.netloc, url.path or "/aoi", "aoi.v1")
    register = client_frame(
        json.dumps({"type": "register", "req": 1, "app_id": app_id}).encode(), TEXT
    )
    prepared = []
    for client_id, credential, source in clients:
        hello = json.dumps(
            {"type": "hello", "version": 1, "client_id": client_id, "credential": credential},
            separators=(",", ":"),
        ).encode()
        handshake = AoiHandshake(upgrade, client_frame(hello, TEXT), register)
        prepared.append((client_socket(source), handshake))
    address = (url.hostname or "127.0.0.1", url.port or 80)
    return connect_all(address, prepared, start_at, timeout)


def connect_main(args: argparse.Namespace) -> None:
    """``python -m bench.aoi_storm connect``: one storm process. Prints one JSON line when
    every client is registered or failed, holds the sessions until stdin closes."""
    raise_nofile()
    clients = [
        (f"{args.prefix}{n}", f"{args.secret_prefix}{n}", SOURCES[n % len(SOURCES)])
        for n in range(args.first, args.first + args.count)
    ]
    print(json.dumps({"event": "prepared"}), flush=True)
    durations, errors, sockets = storm_connect(
        args.aoi2, clients, app_id=args.app_id, start_at=args.start_at, timeout=args.timeout
    )
    print(json.dumps({
        "event": "stormed", "connected": len(durations), "failed": sum(errors.values()),
        "errors": errors, "durations": list(durations), "done": time.monotonic(),
    }), flush=True)  # fmt: skip
    sys.stdin.read()  # held open until the parent is done measuring
    for sock in sockets:
        sock.close()


# --- the parent --------------------------------------------------------------------------


def _spawn_storm(aoi2: str, first: int, count: int, start_at: float, timeout: float) -> Any:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.aoi_storm", "connect", "--aoi2", aoi2,
         "--first", str(first), "--count", str(count), "--app-id", server.APP,
         "--start-at", str(start_at), "--timeout", str(timeout)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=server.ROOT,
    )  # fmt: skip


def _latency(
    pushed: Sequence[dict[str, Any]],
    receipts: dict[str, list[float]],
    since: float,
    until: float,
) -> dict[str, Any]:
    """:func:`bench.server.latencies` for the notifications accepted in [since, until)."""
    accepted: dict[str, float] = {}
    for p in pushed:
        accepted.update({i: t for i, t in p["accepted"].items() if since <= t < until})
    after_201 = sorted(receipts[i][0] - t for i, t in accepted.items() if i in receipts)
    end_to_end = sorted(receipts[i][0] - receipts[i][1] for i in accepted if i in receipts)
    return {
        "accepted_in_window": len(accepted),
        "accepted_per_s": round(len(accepted) / (until - since)) if until > since else None,
        "latency_201_to_receipt_ms": percentiles(after_201),
        "latency_push_sent_to_receipt_ms": percentiles(end_to_end),
        "receipt_before_201_seen": sum(v < 0 for v in after_201),
        "not_received": sum(i not in receipts for i in accepted),
    }


def storm(
    folder: Path,
    clients: int = 5000,
    *,
    steady: int = 100,
    rate: float = 1000.0,
    processes: int = 2,
    connections: int = 64,
    baseline: float = 2.0,
    after: float = 1.0,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """``clients`` AOI sessions opened at once while ``steady`` ones receive ``rate`` pushes/s."""
    started = time.monotonic()
    with server.server(folder, steady + clients) as (process, here):
        holder = server.clients(here["aoi2"], 0, steady, "--record")
        ready = server.line(holder)
        if ready["failed"]:
            raise RuntimeError(f"steady clients: {ready['failed']} of {steady} failed")
        tokens = folder / "tokens.json"
        tokens.write_text(json.dumps(ready["tokens"]))
        processes = max(1, min(processes, clients))
        begin = time.monotonic() + 1.0 + 0.002 * clients  # pusher and storm sockets ready
        storm_at = begin + baseline
        far = storm_at + timeout + after + 30
        pusher = server.spawn(
            "pusher", "--http", here["http"], "--key", server.KEY, "--tokens", str(tokens),
            "--connections", str(connections), "--rate", str(rate), "--begin", str(begin),
            "--start", str(begin), "--end", str(far), "--record",
        )  # fmt: skip
        share, extra = divmod(clients, processes)
        stormers, first = [], steady
        for k in range(processes):
            count = share + (k < extra)
            stormers.append(_spawn_storm(here["aoi2"], first, count, storm_at, timeout))
            first += count
        try:
            for p in stormers:
                assert server.line(p)["event"] == "prepared"
            if time.monotonic() > storm_at - 0.2:
                raise RuntimeError("the storm processes were not ready before the storm")
            time.sleep(max(0.0, storm_at - time.monotonic()))
            cpu_before = cpu_seconds(process.pid)
            tcp_before, machine = tcp_counters(), machine_jiffies()
            stormed = [server.line(p) for p in stormers]
            durations = [d for reply in stormed for d in reply["durations"]]
            storm_end = storm_at + max(durations) if durations else max(r["done"] for r in stormed)
            server_cpu = cpu_seconds(process.pid) - cpu_before
            tcp, machine_busy = (
                tcp_counters_since(tcp_before),
                machine_busy_since(machine),
            )
            time.sleep(max(0.0, storm_end + after - time.monotonic()))
            assert pusher.stdin is not None
            pusher.stdin.write(json.dumps({"end": time.monotonic()}) + "\n")
            pusher.stdin.flush()
            pushed = server.line(pusher)
            pusher.wait(timeout=30)
            time.sleep(1.0)  # the last deliveries
            done = server.finish(holder)
            rss = server.rss_kb(process.pid)
        finally:
            for p in stormers:
                if p.poll() is None:
                    assert p.stdin is not None
                    p.stdin.close()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.wait(timeout=30)
            server.reap([*stormers, pusher, holder])
    connected, errors = tally(stormed)
    during = _latency([pushed], done["receipts"], storm_at, storm_end)
    return {
        "clients": clients,
        "connected": connected,
        "failed": clients - connected,
        "errors": errors,
        "all_connected_s": round(storm_end - storm_at, 3) if connected == clients else None,
        "welcome_registered_ms": percentiles(durations),
        "server_cpu_s_during_storm": round(server_cpu, 2),
        "server_cpu_ms_per_client": round(server_cpu / clients * 1000, 3) if clients else None,
        "machine_busy_share_during_storm": machine_busy,
        "tcp_counters_during_storm": tcp,
        "server_rss_kb": rss,
        "steady_sessions": steady,
        "rate_per_s": rate,
        "pusher_connections": connections,
        "late_pushes": pushed["late"],
        "accepted_during_storm_per_s": during["accepted_per_s"],
        "steady_during_storm": during,
        "steady_before_storm": _latency([pushed], done["receipts"], begin, storm_at),
        "steady_sessions_lost": done["sessions_lost"],
        "steady_duplicates": done["duplicates"],
        "statuses": pushed["statuses"],
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    connect = sub.add_parser("connect", help="one storm process (used by the parent)")
    connect.add_argument("--aoi2", required=True)
    connect.add_argument("--first", type=int, default=0)
    connect.add_argument("--count", type=int, required=True)
    connect.add_argument("--prefix", default="dev-")
    connect.add_argument("--secret-prefix", default="secret-")
    connect.add_argument("--app-id", default=server.APP)
    connect.add_argument("--start-at", type=float, required=True, help="time.monotonic()")
    connect.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--steady", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--processes", type=int, default=2, help="storm processes")
    args = parser.parse_args()
    if args.role == "connect":
        connect_main(args)
        return
    raise_nofile(131072)  # the server (a child) inherits it
    with tempfile.TemporaryDirectory() as tmp:
        figures = storm(
            Path(tmp), args.clients, steady=args.steady, rate=args.rate, processes=args.processes
        )
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
