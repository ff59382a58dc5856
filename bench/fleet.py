"""A fleet on Redis: throughput with 1 and 2 worker processes, and the cost of forwarding a
notification from the node that accepted it to the node that holds the session.

    python -m bench.fleet [--clients 100] [--connections 128] [--seconds 5] [--out FILE]

One redis-server started by ``scripts/redis`` with ``appendfsync always`` (what a 201
promises by default, docs/operations.md 8.6) serves every run; each run uses a database of
its own. The load generators are those of :mod:`bench.server` (C, closed loop: each of the
pusher's ``--connections`` keep-alive connections has one push in flight; ``--clients``
sessions ack everything).

- workers: ``aoi server --workers N --store ...`` for N = 1 and 2 on one port. Notifications
  acked per second; CPU per notification of the workers (``server``) and of redis-server.
  With 2 workers the sessions and the pusher's connections land on either: about half the
  pushes are forwarded to the other worker.
- forwarding: two nodes (two ``aoi server`` processes on one Redis), the sessions on node 1.
  The pusher pushes to node 1 (``local``: nothing forwarded), then to node 2 (``forwarded``:
  every notification crosses). CPU per notification of node 1, node 2 and redis-server in
  each; ``forward_cpu_us`` is the difference of the totals, what one forward costs. It is
  the difference of two figures of some 300 µs that vary by tens of µs from run to run on a
  shared machine: compare the two totals over several runs rather than trust one
  difference (``python -m bench.redis_fleet`` measures the forward alone).

The machine's cores are shared by the servers, redis-server and the load generators: the
busy share of the machine is recorded beside each run. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from . import loadgen, server
from .machine import machine_busy_since, machine_jiffies, raise_nofile
from .redis_server import RedisServer, redis_server


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def node(
    folder: Path, clients: int, store: str, *flags: str
) -> AbstractContextManager[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """``aoi server`` on ``store`` with ``flags`` (``--workers 2``, say); it and its URLs."""
    return server.server(folder, clients, store=store, flags=flags)


def drive(
    folder: Path,
    aoi2: str,
    http: str,
    clients: int,
    connections: int,
    seconds: float,
    main_pid: int,
    servers: Mapping[str, Sequence[int]],
) -> dict[str, Any]:
    """Closed-loop pushes to ``http`` for sessions held at ``aoi2``; the CPU of ``servers``
    by name (``main_pid`` is what the figures call the server: the one started)."""
    holder = server.clients(aoi2, 0, clients)
    try:
        ready = loadgen.line(holder)
        assert ready["failed"] == 0, ready
        tokens = folder / "tokens.txt"
        tokens.write_text("".join(f"{token}\n" for token in ready["tokens"]))

        def pushers(begin: float, window: tuple[float, float]) -> list[subprocess.Popen[str]]:
            return [server.pusher(
                http, tokens, "--connections", str(connections), "--rate", "0",
                "--begin", f"{begin:.6f}", "--start", f"{window[0]:.6f}",
                "--end", f"{window[1]:.6f}", "--batch", "1",
            )]  # fmt: skip

        jiffies = machine_jiffies()
        result = loadgen.drive(
            main_pid, holder, pushers, seconds, 1.5, server.NAMES, others=servers
        )
        result["machine_busy"] = machine_busy_since(jiffies)
    finally:
        loadgen.reap([holder])
    return result


def workers(folder: Path, redis: RedisServer, args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for count in (1, 2):
        store = f"{redis.url}/{count}"
        run = folder / f"workers-{count}"
        with node(run, args.clients, store, "--workers", str(count)) as (process, here):
            pids = children(process.pid) if count > 1 else [process.pid]
            runs[str(count)] = drive(
                run, here["aoi2"], here["http"], args.clients, args.connections, args.seconds,
                process.pid, {"server": pids, "redis-server": [redis.pid]},
            )  # fmt: skip
    one, two = runs["1"]["acked_per_s"], runs["2"]["acked_per_s"]
    runs["throughput_ratio_2_to_1"] = round(two / one, 2) if one else None
    return runs


def forwarding(folder: Path, redis: RedisServer, args: argparse.Namespace) -> dict[str, Any]:
    store = f"{redis.url}/3"
    runs: dict[str, Any] = {}
    with (
        node(folder / "node-1", args.clients, store) as (one, here_1),
        node(folder / "node-2", args.clients, store) as (two, here_2),
    ):
        pids = {"node-1": [one.pid], "node-2": [two.pid], "redis-server": [redis.pid]}
        for name, http in (("local", here_1["http"]), ("forwarded", here_2["http"])):
            runs[name] = drive(
                folder, here_1["aoi2"], http, args.clients, args.connections, args.seconds,
                one.pid, pids,
            )  # fmt: skip
    totals = {
        name: sum(v for v in run["others_cpu_us_per_notification"].values() if v is not None)
        for name, run in runs.items()
    }
    runs["total_cpu_us_per_notification"] = {n: round(t, 1) for n, t in totals.items()}
    runs["forward_cpu_us"] = round(totals["forwarded"] - totals["local"], 1)
    return runs


def run(folder: Path, clients: int, connections: int, seconds: float) -> dict[str, Any]:
    """Both workloads, on a redis-server of their own (``appendfsync always``)."""
    args = argparse.Namespace(clients=clients, connections=connections, seconds=seconds)
    with redis_server(folder / "redis", "always") as redis:
        return {
            "redis_fsync": "always",
            "workers": workers(folder, redis, args),
            "forwarding": forwarding(folder, redis, args),
        }


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--connections", type=int, default=128)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    raise_nofile(65536)
    with tempfile.TemporaryDirectory(prefix="aoi-fleet-") as tmp:
        document = run(Path(tmp), args.clients, args.connections, args.seconds)
    text = json.dumps(document, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
