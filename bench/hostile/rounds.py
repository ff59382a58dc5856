"""How long one round of the server's event loop takes while hellos arrive all at once.

    python -m bench.hostile.rounds [--hellos 2000]

trio runs every task that is ready in one round; an established session's notification
takes a few rounds, so the longest rounds are what it waits for. This starts the reference
AOI Server in this process, full (``max_sessions = 0``), with a trio instrument that times
each round (from the end of one wait for I/O to the start of the next); another process
upgrades ``hellos`` WebSocket connections to it, then sends every one's hello at the same
instant. Printed: how long until all were answered, and the rounds' p50, p99 and longest,
in ms. Run it on a checkout of another version to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bench.loadgen import percentiles
from bench.machine import raise_nofile

from .session import SOURCES, client_frame, upgrade_request


class Rounds(trio.abc.Instrument):
    def __init__(self) -> None:
        self.measuring = False
        self.durations: list[float] = []
        self._woke: float | None = None

    def after_io_wait(self, timeout: float) -> None:
        self._woke = time.perf_counter()

    def before_io_wait(self, timeout: float) -> None:
        if self.measuring and self._woke is not None:
            self.durations.append(time.perf_counter() - self._woke)


def clients(port: int, count: int) -> None:
    """The other process: upgrade ``count`` connections, say "ready", wait for a line,
    send every hello, say how many were answered."""
    raise_nofile()
    sockets = []
    for n in range(count):
        sock = socket.create_connection(("127.0.0.1", port), source_address=(SOURCES[n % 8], 0))
        sock.sendall(upgrade_request(f"127.0.0.1:{port}"))
        sockets.append(sock)
    for sock in sockets:
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
    hellos = [
        client_frame(json.dumps({"type": "hello", "version": 1, "client_id": f"dev-{n}",
                                 "credential": f"secret-{n}"}).encode())
        for n in range(count)
    ]  # fmt: skip
    print("ready", flush=True)
    sys.stdin.readline()
    for sock, hello in zip(sockets, hellos, strict=True):
        sock.sendall(hello)
    answered = 0
    for sock in sockets:
        sock.settimeout(60)
        with contextlib.suppress(OSError):
            answered += bool(sock.recv(4096))
    print(json.dumps({"answered": answered}), flush=True)
    for sock in sockets:
        sock.close()


def measure(hellos: int) -> dict[str, Any]:
    from aoi.server.app import Server
    from aoi.server.collector import pace_collections
    from aoi.server.config import parse_config

    raise_nofile()
    rounds = Rounds()
    folder = Path(tempfile.mkdtemp(prefix="aoi-rounds-"))
    config = parse_config({
        "server": {"listen": "127.0.0.1:0", "db": str(folder / "aoi.db"),
                   "handshake_timeout_s": 300},
        "overload": {"max_sessions": 0, "max_loop_lag_ms": 1e6},
        "clients": [{"client_id": f"dev-{n}", "credential": f"secret-{n}"}
                    for n in range(hellos)],
    })  # fmt: skip
    result: dict[str, Any] = {"hellos": hellos}

    async def main() -> None:
        server = Server(config)
        async with trio.open_nursery() as nursery:
            here = await nursery.start(server.run)
            nursery.start_soon(pace_collections)  # as the aoi server daemon does
            port = int(here.http.rsplit(":", 1)[1])
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.hostile.rounds", "--clients", str(port),
                 "--hellos", str(hellos)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            )  # fmt: skip
            assert process.stdin is not None and process.stdout is not None
            line = await trio.to_thread.run_sync(process.stdout.readline)
            assert line.strip() == "ready", line
            await trio.sleep(0.5)
            rounds.measuring = True
            began = trio.current_time()
            process.stdin.write("go\n")
            process.stdin.flush()
            answered = json.loads(await trio.to_thread.run_sync(process.stdout.readline))
            rounds.measuring = False
            result.update(answered, seconds=round(trio.current_time() - began, 2))
            result["round_ms"] = percentiles(rounds.durations)
            await trio.to_thread.run_sync(process.wait)
            nursery.cancel_scope.cancel()

    trio.run(main, instruments=[rounds])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hellos", type=int, default=2000)
    parser.add_argument("--clients", type=int, help=argparse.SUPPRESS)  # the other process
    args = parser.parse_args()
    if args.clients:
        clients(args.clients, args.hellos)
        return
    print(json.dumps(measure(args.hellos)))


if __name__ == "__main__":
    main()
