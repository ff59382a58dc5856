"""The reference AOI Server under load: memory per idle session, throughput, latency.

    python -m bench.server [--sessions 5000,10000,20000] [--clients 100] [--rate 1000]
                           [--seconds 5] [--only memory throughput latency]

Each measurement starts a fresh ``aoi server`` process (SQLite store with synchronous=FULL,
as shipped) and drives it from separate load-generator processes (:mod:`bench.loadgen`), so
neither their memory nor their CPU is the server's. Prints one JSON document.

- memory: VmRSS of the server before and after N authenticated idle sessions (hello,
  welcome, register one app); per session = delta / N. Target <= 16 KB.
- throughput: ``--clients`` sessions acking everything, a pusher in closed loop on keep-alive
  connections; notifications acked at the clients per second, and per second of the
  server's CPU; the load generator's CPU per notification. ``--batch 100``: the pusher
  sends batches of 100 (``POST /v1/push``) instead of single pushes.
- latency: pushes at a fixed ``--rate``; per notification, the client's receipt minus the
  pusher's 201 (``time.monotonic`` is one clock for every process).
  ``--rate 250,500,1000`` measures each rate in turn.

:func:`exact` is the throughput machinery with a fixed number of pushes instead of a time
window: every count it returns is exact (the regression guard of the test suite uses it).
The connection storm is :mod:`bench.aoi_storm`; ``python -m bench`` runs everything, for this
server and for Mosquitto.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import loadgen
from .loadgen import finish, line, reap
from .machine import raise_nofile

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key-0123456789"
NAMES = ("201", "push_sent")  # what acceptance and sending are, in the latencies' names
APP = "com.example.bench"
SOURCES = ",".join(f"127.0.0.{n}" for n in range(2, 10))
PER_PROCESS = 2500  # sessions per load-generator process
FD_MARGIN = 64  # descriptors the server needs besides its sessions


def config(clients: int, max_sessions: int = 1_000_000) -> str:
    lines = [
        '[server]\nid = "bench"\nlisten = "127.0.0.1:0"\ndb = "bench.db"\nkeepalive_s = 3600',
        "handshake_timeout_s = 60",
        f"[overload]\nmax_sessions = {max_sessions}",
        "hello_rate_per_s = 1000000.0\nhello_burst = 1000000",
        "max_loop_lag_ms = 1000000.0\nmax_store_backlog = 1000000",
        f'[[server_apps]]\nname = "bench"\nkey = "{KEY}"\napp_ids = ["{APP}"]',
        "rate_per_s = 10000000.0\nburst = 10000000",
    ]
    lines += [
        f'[[clients]]\nclient_id = "dev-{n}"\ncredential = "secret-{n}"' for n in range(clients)
    ]
    return "\n".join(lines) + "\n"


@contextmanager
def server(
    folder: Path,
    clients: int,
    launcher: Sequence[str] = ("-m", "aoi"),
    max_sessions: int = 1_000_000,
    store: str | None = None,
    flags: Sequence[str] = (),
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """``aoi server`` (started with ``python <launcher> server ...``) for ``clients`` clients,
    with ``flags`` and its store on the Redis at ``store`` if given, and what its ready file
    says (its URLs)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("bench.db*"):
        old.unlink()
    text = config(clients, max_sessions)
    if store is not None:
        text = text.replace("[server]\n", f'[server]\nstore = "{store}"\n', 1)
    (folder / "server.toml").write_text(text)
    ready = folder / "ready.json"
    ready.unlink(missing_ok=True)
    with (folder / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, *launcher, "server", "--config", str(folder / "server.toml"),
             "--ready-file", str(ready), "--log-level", "warning", *flags],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start; see {folder / 'server.log'}")
            time.sleep(0.05)
        yield process, json.loads(ready.read_text())
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pressure() -> dict[str, float]:
    """Share of the last 10 s in which some task waited for a CPU / for I/O (PSI): the
    machine is shared, and a busy neighbour shows here."""
    found = {}
    for kind in ("cpu", "io"):
        try:
            first = Path(f"/proc/pressure/{kind}").read_text().split()[1]
            found[kind] = float(first.partition("=")[2])
        except (OSError, IndexError, ValueError):
            pass
    return found


def rss_kb(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1])
    raise RuntimeError("no VmRSS")


def clients(aoi2: str, first: int, count: int, *extra: str) -> subprocess.Popen[str]:
    """A generator process holding AOI-2 sessions ``dev-<first>`` .. (see bench/loadgen.c)."""
    url = urlsplit(aoi2)
    return loadgen.spawn(
        "aoi-clients", "--host", url.hostname or "127.0.0.1", "--port", str(url.port or 80),
        "--path", url.path or "/aoi", "--first", str(first), "--count", str(count),
        "--sources", SOURCES, "--app-id", APP, *extra,
    )  # fmt: skip


def pusher(http: str, tokens: Path, *extra: str) -> subprocess.Popen[str]:
    """A generator process pushing round robin to ``tokens`` (a file, one a line)."""
    url = urlsplit(http)
    return loadgen.spawn(
        "aoi-pusher", "--host", url.hostname or "127.0.0.1", "--port", str(url.port or 80),
        "--key", KEY, "--targets", str(tokens), *extra,
    )  # fmt: skip


# --- memory ------------------------------------------------------------------------------


def memory(folder: Path, steps: list[int]) -> dict[str, Any]:
    hard = raise_nofile()
    limit = hard - FD_MARGIN
    wanted = sorted(steps)
    steps = sorted({min(n, limit) for n in wanted})
    started = time.monotonic()
    results: dict[str, Any] = {"fd_hard_limit": hard, "steps": []}
    if steps[-1] < wanted[-1]:
        results["note"] = (
            f"{wanted[-1]} sessions need more descriptors than the hard RLIMIT_NOFILE "
            f"({hard}) allows and it cannot be raised here: measured at {steps[-1]}"
        )
    held: list[tuple[subprocess.Popen[str], int]] = []  # load generators and their sessions
    with server(folder, steps[-1] + 100) as (process, here):
        try:
            warm = clients(here["aoi2"], steps[-1], 100)  # first-use costs, not per session
            assert line(warm)["failed"] == 0
            finish(warm)
            time.sleep(1.0)
            base = rss_kb(process.pid)
            results["baseline_rss_kb"] = base
            for target in steps:
                began, opened = time.monotonic(), sum(n for _, n in held)
                batch = []
                while opened < target:
                    count = min(PER_PROCESS, target - opened)
                    batch.append((clients(here["aoi2"], opened, count), count))
                    opened += count
                failed = sum(line(p)["failed"] for p, _ in batch)
                held.extend(batch)
                connect_s = time.monotonic() - began
                time.sleep(2.0)
                rss = rss_kb(process.pid)
                results["steps"].append({
                    "sessions": target, "failed": failed, "rss_kb": rss, "delta_kb": rss - base,
                    "per_session_kb": round((rss - base) / target, 2),
                    "new_sessions_per_s": round(sum(n for _, n in batch) / connect_s),
                })  # fmt: skip
                print(json.dumps(results["steps"][-1]), file=sys.stderr)
        finally:
            results["sessions_lost"] = sum(finish(p)["sessions_lost"] for p, _ in held)
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


# --- throughput and latency --------------------------------------------------------------


def load(
    folder: Path,
    sessions: int,
    connections: int,
    rate: float,
    seconds: float,
    *,
    warmup: float = 1.5,
    batch: int = 1,
    on_window: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """``rate`` 0: closed loop (throughput), else a fixed rate (latency); one pusher process
    with ``connections`` keep-alive connections, one request in flight on each: a push, or
    with ``batch`` above 1 a batch of that many (``POST /v1/push``).

    ``on_window`` is called with the server's pid as the counting window opens (a profiler).
    """
    started = time.monotonic()
    record = ["--record"] if rate > 0 else []
    with server(folder, sessions) as (process, here):
        holder = clients(here["aoi2"], 0, sessions, *record)
        try:
            ready = line(holder)
            assert ready["failed"] == 0, ready
            tokens = folder / "tokens.txt"
            tokens.write_text("".join(f"{token}\n" for token in ready["tokens"]))

            def pushers(begin: float, window: tuple[float, float]) -> list[subprocess.Popen[str]]:
                return [pusher(
                    here["http"], tokens, "--connections", str(connections), "--rate", str(rate),
                    "--begin", f"{begin:.6f}", "--start", f"{window[0]:.6f}",
                    "--end", f"{window[1]:.6f}", "--batch", str(batch), *record,
                )]  # fmt: skip

            result = loadgen.drive(
                process.pid, holder, pushers, seconds, warmup, NAMES, on_window=on_window
            )
            rss = rss_kb(process.pid)
        finally:
            reap([holder])
    result.update(
        pressure=pressure(), sessions=sessions, connections=connections, batch=batch,
        server_rss_kb=rss, seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip
    return result


def server_counters(http: str) -> dict[str, float]:
    """The server's Prometheus counters (``GET /metrics``), by name, summed over labels."""
    with urllib.request.urlopen(http.rstrip("/") + "/metrics", timeout=10) as response:
        text = response.read().decode()
    counters: dict[str, float] = {}
    for row in text.splitlines():
        if row.startswith("#") or not row.strip():
            continue
        name, _, value = row.rpartition(" ")
        name = name.partition("{")[0]
        counters[name] = counters.get(name, 0.0) + float(value)
    return counters


def exact(
    folder: Path,
    sessions: int,
    pushes: int,
    connections: int = 8,
    timeout: float = 60.0,
    batch: int = 1,
) -> dict[str, Any]:
    """The throughput workload with ``pushes`` pushes (closed loop, in batches of ``batch``
    when above 1) instead of a time window; returns counts only: what was pushed, accepted,
    received, acked, at both ends.

    Nothing here is timed (``timeout`` only bounds a run that goes wrong): every figure is
    the same on any machine when the server is right.
    """
    with server(folder, sessions) as (_, here):
        holder = clients(here["aoi2"], 0, sessions, "--record")
        procs = [holder]
        try:
            ready = line(holder)
            tokens = folder / "tokens.txt"
            tokens.write_text("".join(f"{token}\n" for token in ready["tokens"]))
            deadline = time.monotonic() + timeout
            pushing = pusher(
                here["http"], tokens, "--connections", str(connections), "--count", str(pushes),
                "--start", "0", "--end", f"{deadline:.6f}", "--batch", str(batch), "--record",
            )  # fmt: skip
            procs.append(pushing)
            pushed = line(pushing)
            pushing.wait(timeout=30)
            accepted = set(pushed["accepted"])
            while True:  # until the clients have acked every accepted push (or the deadline)
                loadgen.command(holder, "stats")
                if line(holder)["acked"] >= len(accepted) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            while True:  # until the server has taken every ack (or the deadline)
                counters = server_counters(here["http"])
                delivered = counters.get("aoi_notifications_delivered_total", 0.0)
                if delivered >= len(accepted) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            done = finish(holder)
        finally:
            reap(procs)
    received = set(done["receipts"])
    return {
        "sessions": sessions, "registered": len(ready["tokens"]), "failed": ready["failed"],
        "pushes": pushes, "sent": pushed["sent"], "statuses": pushed["statuses"],
        "accepted": len(accepted),
        "acked": done["acked"], "distinct": done["distinct"], "duplicates": done["duplicates"],
        "accepted_not_received": len(accepted - received),
        "received_not_accepted": len(received - accepted),
        "sessions_lost": done["sessions_lost"],
        "lost_connections": pushed["lost_connections"],
        "server_accepted": int(counters.get("aoi_notifications_accepted_total", -1)),
        "server_delivered": int(counters.get("aoi_notifications_delivered_total", -1)),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="5000,10000,20000")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--connections", type=int, default=128, help="pushes in flight")
    parser.add_argument("--rate", default="1000", help="pushes/s for latency; a list: one run each")
    parser.add_argument("--latency-connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=1, help="throughput: pushes per request")
    parser.add_argument("--only", nargs="+", default=["memory", "throughput", "latency"])
    parser.add_argument("--dir", help="where the server's files go (default: a temporary one)")
    args = parser.parse_args()
    raise_nofile()
    report: dict[str, Any] = {
        "cpus": os.cpu_count(), "load_average_before": os.getloadavg(),
        "pressure_before": pressure(),
    }  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        if "memory" in args.only:
            report["memory"] = memory(folder, [int(n) for n in args.sessions.split(",")])
        if "throughput" in args.only:
            report["throughput"] = load(
                folder, args.clients, args.connections, 0, args.seconds, batch=args.batch
            )
        if "latency" in args.only:
            report["latency"] = [
                load(folder, args.clients, args.latency_connections, float(rate), args.seconds)
                for rate in args.rate.split(",")
            ]
    report["load_average_after"] = os.getloadavg()
    report["pressure_after"] = pressure()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
