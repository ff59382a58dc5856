"""Connection storm on the reference AOI Server: many AOI Clients connecting at once while
some already connected ones receive pushes at a fixed rate.

    python -m bench.aoi_storm [--clients 5000] [--steady 100] [--rate 1000]

The counterpart of :func:`bench.mqtt.storm`; both are measured by
:func:`bench.connection_storm.measure`. One ``aoi server`` process
(:func:`bench.server.server`: the SQLite store with synchronous=FULL as shipped, overload
limits out of the way as for every workload of ``bench.server``); ``steady`` sessions held
by a :mod:`bench.loadgen` ``aoi-clients`` process that acks everything and records each
receipt; an ``aoi-pusher`` process pushing to them at ``rate``/s on keep-alive AOI-3
connections. At the storm's instant, ``processes`` more ``aoi-clients`` processes open
``clients`` sessions at once (``--at``), every socket prepared beforehand: each client sends
its WebSocket upgrade once connected, its ``hello`` after the ``101``, its ``register``
after the ``welcome``. A client is served when its ``registered`` arrives.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from . import connection_storm, server
from .loadgen import line
from .machine import raise_nofile


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
    full: bool = False,
) -> dict[str, Any]:
    """``clients`` AOI sessions opened at once while ``steady`` ones receive ``rate`` pushes/s.
    ``full``: the server's ``max_sessions`` is ``steady``, so every storm hello is refused
    (``reject{overloaded}``, counted in ``errors``)."""
    started = time.monotonic()
    max_sessions = steady if full else 1_000_000
    with server.server(folder, steady + clients, max_sessions=max_sessions) as (process, here):
        holder = server.clients(here["aoi2"], 0, steady, "--record")
        ready = line(holder)
        if ready["failed"]:
            holder.kill()
            raise RuntimeError(f"steady clients: {ready['failed']} of {steady} failed")
        tokens = folder / "tokens.txt"
        tokens.write_text("".join(f"{token}\n" for token in ready["tokens"]))

        def pusher(begin: float, end: float) -> connection_storm.Process:
            return server.pusher(
                here["http"], tokens, "--connections", str(connections), "--rate", str(rate),
                "--begin", f"{begin:.6f}", "--start", f"{begin:.6f}", "--end", f"{end:.6f}",
                "--record",
            )  # fmt: skip

        def stormer(first: int, count: int, at: float) -> connection_storm.Process:
            return server.clients(
                here["aoi2"], steady + first, count, "--at", f"{at:.6f}", "--timeout", str(timeout)
            )

        figures = connection_storm.measure(
            process.pid, holder, pusher, stormer, clients, processes=processes,
            baseline=baseline, after=after, timeout=timeout, names=server.NAMES,
        )  # fmt: skip
        figures["server_rss_kb"] = server.rss_kb(process.pid)
    figures.update(
        steady_sessions=steady, rate_per_s=rate, pusher_connections=connections,
        seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--steady", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--processes", type=int, default=2, help="storm processes")
    parser.add_argument(
        "--full", action="store_true", help="max_sessions = --steady: every storm hello refused"
    )
    args = parser.parse_args()
    raise_nofile(131072)  # the server (a child) inherits it
    with tempfile.TemporaryDirectory() as tmp:
        figures = storm(
            Path(tmp), args.clients, steady=args.steady, rate=args.rate,
            processes=args.processes, full=args.full,
        )  # fmt: skip
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
