"""The AOI reference server and Mosquitto 2, side by side, in one run (``make bench``).

    python -m bench [--quick] [--only memory throughput latency storm reallocation]
                    [--profile | --no-profile] [--wait-quiet SECONDS] [--out reports]

Every workload runs for both systems, one after the other, at the same sizes:

1. memory: RSS per authenticated idle session at 5k, 10k and 20k sessions
   (:func:`bench.server.memory`, :func:`bench.mqtt.memory`);
2. throughput: one server app pushing to 100 clients that ack, closed loop, notifications
   delivered and acked per second (:func:`bench.server.load`, :func:`bench.mqtt.throughput`;
   Mosquitto: QoS 1 PUBLISH to per-client topics); for AOI once more with batch pushes of
   100 (``POST /v1/push``), against the same Mosquitto figures;
3. latency: p50/p99/p999 from acceptance (201 / PUBACK) to the client's receipt at a fixed
   1,000/s (same functions, paced);
4. storm: 5,000 clients connecting at once; time until all are served, and the p99 latency of
   100 already connected clients pushed at 1,000/s meanwhile (:func:`bench.aoi_storm.storm`,
   :func:`bench.mqtt.storm`);
5. reallocation (AOI only): 1,000 clients moved off an overloaded server onto its alternates
   (:func:`bench.storm.run`);
6. fleet (AOI only): throughput with 1 and 2 worker processes on Redis, and the CPU a
   notification forwarded from node to node costs (:func:`bench.fleet.run`).

Mosquitto is Debian's package, installed if missing and started on loopback for each
workload (:class:`bench.mosquitto.Broker`). Before each workload, the machine's load average,
how busy its CPUs were over one second, and its CPU pressure are recorded: the machine may be
shared, and a figure taken while it was busy is not the server's alone.

Writes ``reports/bench.json`` (every figure, the table's rows with the ratios AOI/Mosquitto,
the targets met or not, the machine, the command, the date), ``reports/bench.md`` (the
table) and ``reports/bench.png`` (a chart). When the throughput or latency target is missed
(or with ``--profile``), one more AOI throughput run is profiled with py-spy; its summary
goes into both (``profile``) and the collapsed stacks into ``reports/bench-profile.txt``.
``--quick`` is a smoke run at small sizes (about a minute and a half).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import logging
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import aoi_storm, fleet, mosquitto, mqtt, report, server, stack_floor
from .machine import machine_busy_since, machine_jiffies, raise_nofile

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("memory", "throughput", "latency", "storm", "reallocation", "fleet")
NOFILE = 131072  # 20k sessions and their load generators; root raises the hard limit too

FULL = {
    "idle_sessions": [5000, 10000, 20000],
    "clients": 100,
    "in_flight": 128,  # throughput: AOI keep-alive connections, MQTT publish window
    "batch": 100,  # throughput, batched: notifications per AOI batch push
    "batch_connections": 4,  # ... and batches in flight
    "connections": 64,  # latency and storm: the AOI pusher's keep-alive connections
    "rate_per_s": 1000.0,
    "window_s": 5.0,
    "storm_clients": 5000,
    "storm_steady": 100,
    "reallocation_clients": 1000,
    "warmup_s": 1.5,  # before a counting window
    "storm_baseline_s": 2.0,  # pushes before the storm
}
QUICK = {
    **FULL,
    "idle_sessions": [500, 1000],
    "window_s": 2.0,
    "storm_clients": 500,
    "reallocation_clients": 100,
}


# --- the machine and the moment ----------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    cpuinfo = _read("/proc/cpuinfo")
    model = next(
        (line.partition(":")[2].strip() for line in cpuinfo.splitlines()
         if line.startswith("model name")), platform.processor() or "unknown",
    )  # fmt: skip
    memory_kb = next(
        (int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
         if line.startswith("MemTotal:")), 0,
    )  # fmt: skip
    release = dict(
        line.split("=", 1) for line in _read("/etc/os-release").splitlines() if "=" in line
    )
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
            text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_kb / 1024**2, 1),
        "kernel": platform.release(),
        "os": release.get("PRETTY_NAME", "").strip('"'),
        "python": platform.python_version(),
        "mosquitto": mosquitto.version(),
        "aoi_kit_commit": commit,
        "rlimit_nofile": raise_nofile(NOFILE),
    }


def command(argv: list[str]) -> str:
    executable = Path(sys.executable)
    with_root = executable.is_relative_to(ROOT)
    shown = shlex.join([
        str(executable.relative_to(ROOT)) if with_root else executable.name, "-m", "bench", *argv
    ])  # fmt: skip
    return f"make bench ({shown})" if os.environ.get("MAKELEVEL") and not argv else shown


def conditions(wait_quiet: float) -> dict[str, Any]:
    """The machine just before a workload: load average, the share of its CPUs busy over one
    second (retried for up to ``wait_quiet`` s until under 25 %), CPU and I/O pressure."""
    load = [round(x, 2) for x in os.getloadavg()]
    deadline = time.monotonic() + wait_quiet
    while True:
        before = machine_jiffies()
        time.sleep(1.0)
        busy = machine_busy_since(before)
        if busy < 0.25 or time.monotonic() >= deadline:
            break
    return {"load_average": load, "machine_busy_share": busy, "pressure": server.pressure()}


# --- the workloads -----------------------------------------------------------------------


def aoi(name: str, folder: Path, sizes: dict[str, Any]) -> dict[str, Any]:
    """One workload on the reference server, in ``folder``, at ``sizes`` (:data:`FULL`)."""
    seconds, clients, rate = sizes["window_s"], sizes["clients"], sizes["rate_per_s"]
    connections, warmup = sizes["connections"], sizes["warmup_s"]
    if name == "memory":
        return server.memory(folder, sizes["idle_sessions"])
    if name == "throughput":  # single pushes, then batches (POST /v1/push)
        figures = server.load(folder, clients, sizes["in_flight"], 0, seconds, warmup=warmup)
        figures["batched"] = server.load(
            folder, clients, sizes["batch_connections"], 0, seconds, warmup=warmup,
            batch=sizes["batch"],
        )  # fmt: skip
        return figures
    if name == "latency":
        return server.load(folder, clients, connections, rate, seconds, warmup=warmup)
    if name == "storm":
        return aoi_storm.storm(
            folder, sizes["storm_clients"], steady=sizes["storm_steady"], rate=rate,
            connections=connections, baseline=sizes["storm_baseline_s"],
        )  # fmt: skip
    if name == "reallocation":
        return reallocation(sizes["reallocation_clients"])
    if name == "fleet":
        return fleet.run(folder / "fleet", clients, sizes["in_flight"], seconds)
    raise ValueError(name)


def reallocation(clients: int, **options: Any) -> dict[str, Any]:
    """Workload 5, by ``bench.storm.run`` (1,000 reference AOI Clients moved off an
    overloaded server onto its two alternates)."""
    try:
        from . import storm
    except ImportError as error:
        raise RuntimeError(f"bench.storm is not available: {error}") from error
    logging.getLogger("aoi").setLevel(logging.ERROR)
    figures: dict[str, Any] = storm.run(clients, **options)
    return figures


def broker(name: str, sizes: dict[str, Any]) -> dict[str, Any]:
    """One workload on a fresh Mosquitto broker, at ``sizes`` (:data:`FULL`)."""
    seconds, clients, rate = sizes["window_s"], sizes["clients"], sizes["rate_per_s"]
    warmup = sizes["warmup_s"]
    with mosquitto.Broker() as running:
        if name == "memory":
            return mqtt.memory(running, sizes["idle_sessions"])
        if name == "throughput":  # as many publishes in flight as AOI pushes
            window = sizes["in_flight"]
            return mqtt.throughput(running, clients, seconds, warmup=warmup, window=window)
        if name == "latency":
            return mqtt.latency(running, rate, seconds, clients=clients, warmup=warmup)
        if name == "storm":
            return mqtt.storm(
                running, sizes["storm_clients"], steady=sizes["storm_steady"], rate=rate,
                baseline=sizes["storm_baseline_s"],
            )  # fmt: skip
    raise ValueError(name)


# --- profile -----------------------------------------------------------------------------


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profile(folder: Path, sizes: dict[str, Any], out: Path, batch: int = 1) -> dict[str, Any]:
    """One more AOI throughput run (in batches of ``batch`` when above 1), with py-spy
    sampling the server over the counting window; the collapsed stacks go to ``out``, a
    summary is returned."""
    tool = py_spy()
    if tool is None:
        return {"error": "py-spy not found (pip install py-spy)"}
    seconds = max(2, round(sizes["window_s"]))
    started: list[subprocess.Popen[bytes]] = []
    arguments = ["record", "--duration", str(seconds), "--rate", "200", "--format", "raw"]

    def attach(pid: int) -> None:
        started.append(
            subprocess.Popen(
                [tool, *arguments, "--output", str(out), "--pid", str(pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )

    connections = sizes["in_flight"] if batch == 1 else sizes["batch_connections"]
    figures = server.load(
        folder, sizes["clients"], connections, 0, seconds + 1, batch=batch, on_window=attach
    )
    if not started:
        return {"error": "py-spy was not started"}
    _, errors = started[0].communicate(timeout=60)
    if started[0].returncode or not out.exists():
        return {"error": f"py-spy failed: {errors.decode(errors='replace')[-400:]}"}
    summary = summarise(out.read_text())
    shown = shlex.join(["py-spy", *arguments, "--pid", "<server>"])
    return {
        **summary, "seconds": seconds, "command": shown, "stacks": out.name, "batch": batch,
        "acked_per_s_while_profiled": figures["acked_per_s"],
        "server_cpu_cores_while_profiled": figures["server_cpu_cores"],
        "stack_floor": stack_floor.measure(2.0),
    }  # fmt: skip


# Parts of the server's code, by where a frame's file is; the first that matches wins.
AREAS: list[tuple[str, tuple[str, ...]]] = [
    ("JSON (json)", ("json/",)),
    ("schema validation (jsonschema)", ("jsonschema",)),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("HTTP/1.1 parsing (h11)", ("h11/",)),
    ("WebSocket framing (wsproto)", ("wsproto/",)),
    ("SQLite store (aoi/server/store)", ("aoi/server/store/",)),
    ("AOI-3 push API (aoi/server/push_api)", ("aoi/server/push_api", "aoi/server/push_batch")),
    ("AOI-2 sessions (aoi/server/aoi2, hub)", ("aoi/server/aoi2", "aoi/server/hub")),
    ("protocol core (aoi/core)", ("aoi/core/",)),
    ("net shell (aoi/net)", ("aoi/net/",)),
    ("rest of the server (aoi/server)", ("aoi/server/",)),
    ("trio: sockets, scheduling, threads", ("trio/", "outcome/")),
]


ENTRY = ("<frozen runpy>", "aoi/__main__.py", "aoi/cli.py", "aoi/server/cli.py")


def area(frame: str) -> str | None:
    where = frame.partition(" (")[2]
    if where.startswith(ENTRY):  # on every stack of the main thread: says nothing
        return None
    return next((name for name, needles in AREAS if any(n in where for n in needles)), None)


def summarise(raw: str, top: int = 12) -> dict[str, Any]:
    """py-spy's collapsed stacks (``frame;frame;... count``, root first): per area of
    :data:`AREAS`, the share of the samples whose innermost frame of a known area is in it
    (``areas``: they add up to one, with ``other``) and the share in which the area is
    anywhere on the stack (``inclusive``); and the functions most often innermost (``self``).
    """
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        areas = [area(frame) for frame in frames]
        own[next((a for a in reversed(areas) if a is not None), "other")] += n
        for name in {a for a in areas if a is not None}:
            inclusive[name] += n
        function, _, where = frames[-1].partition(" (")
        leaves[f"{function} ({where.rsplit(':', 1)[0]})" if where else function] += n
    if not total:
        return {"samples": 0, "areas": {}, "inclusive": {}, "self": {}}
    return {
        "samples": total,
        "areas": {name: round(n / total, 3) for name, n in own.most_common()},
        "inclusive": {name: round(n / total, 3) for name, n in inclusive.most_common()},
        "self": {name: round(n / total, 3) for name, n in leaves.most_common(top)},
    }


# --- the run -----------------------------------------------------------------------------


def run(args: argparse.Namespace, argv: list[str]) -> tuple[dict[str, Any], int]:
    began = time.monotonic()
    sizes = dict(QUICK if args.quick else FULL)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "AOI reference server vs Mosquitto 2, side by side",
        "command": command(argv),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "sizes": sizes,
        "systems": {
            "aoi": {
                "name": "AOI reference server (python -m aoi server)",
                "store": "SQLite, synchronous=FULL: a 201 is committed to disk",
                "settings": "overload limits and server-app rate limits raised out of the way",
            },
        },
        "aoi": {},
        "mosquitto": {},
        "conditions": {},
        "errors": {},
    }
    with mosquitto.Broker() as described:
        result["systems"]["mosquitto"] = described.describe()
    result["workloads"] = mosquitto_workload_notes()

    def attempt(key: str, measure: Callable[[], dict[str, Any]], folder: Path) -> dict[str, Any]:
        system, _, name = key.partition(".")
        result["conditions"][key] = conditions(args.wait_quiet)
        print(f"bench: {key} (before: {result['conditions'][key]})", file=sys.stderr, flush=True)
        log = folder / "server.log"
        logged = log.stat().st_size if log.exists() else 0
        try:
            figures = measure()
        except Exception as error:
            result["errors"][key] = f"{error!r}"
            traceback.print_exc()
            figures = {"error": f"{error!r}"}
            if system == "aoi" and log.exists():  # what the server said meanwhile
                with log.open("rb") as said:
                    said.seek(logged)
                    figures["server_log"] = said.read().decode(errors="replace")[-2000:]
        result[system][name] = figures
        shown = {k: v for k, v in figures.items() if k not in ("steps", "push_round_trip_ms")}
        print(f"bench: {key}: {json.dumps(shown)[:600]}", file=sys.stderr, flush=True)
        return figures

    with tempfile.TemporaryDirectory(prefix="aoi-bench-") as tmp:
        folder = Path(tmp)
        for name in args.only:
            attempt(f"aoi.{name}", functools.partial(aoi, name, folder, sizes), folder)
            if name not in ("reallocation", "fleet"):
                attempt(f"mosquitto.{name}", functools.partial(broker, name, sizes), folder)
        result["rows"] = report.rows(result)
        result["targets"] = report.targets(result["rows"])
        missed = any(
            result["targets"][key]["met"] is False
            for key in ("throughput_ratio", "p99_latency_ratio")
        )
        batch_missed = result["targets"]["batch_throughput_ratio"]["met"] is False
        profiles = [
            ("profile", 1, "bench-profile.txt", missed),
            ("profile_batched", sizes["batch"], "bench-profile-batched.txt", batch_missed),
        ]
        for key, batch, stacks, wanted in profiles:
            if not (args.profile or (args.profile is None and wanted)):
                continue
            result["conditions"][f"aoi.{key}"] = conditions(0.0)
            print(f"bench: profiling the AOI server ({key}) with py-spy", file=sys.stderr)
            try:
                result[key] = profile(folder, sizes, out / stacks, batch)
            except Exception as error:
                result[key] = {"error": f"{error!r}"}
                traceback.print_exc()
    result["missing"] = report.missing(result, args.only)
    result["seconds"] = round(time.monotonic() - began, 1)
    report.render(result, out)
    (out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    return result, 1 if result["errors"] else 0


def mosquitto_workload_notes() -> dict[str, str]:
    return {
        "idle_session": "AOI: WebSocket, hello with a credential, welcome, register one app. "
        "Mosquitto: CONNECT with user name and password, SUBSCRIBE aoi/<client_id>/chat QoS 1",
        "push": "AOI: POST /v1/push/<token> -> 201 (stored), notify -> ack. Mosquitto: PUBLISH "
        "QoS 1 to the client's topic -> PUBACK, delivered QoS 1 -> PUBACK",
        "batch": "AOI only: POST /v1/push with 100 notifications -> 200 with 100 results, "
        "stored in one commit; compared with the same Mosquitto throughput figures",
        "source_addresses": "127.0.0.2 .. 127.0.0.9",
        "latency": "acceptance (201 / PUBACK seen by the pusher) to the client's receipt",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run at small sizes")
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument(
        "--profile", action=argparse.BooleanOptionalAction, default=None,
        help="profile the AOI server with py-spy (default: when a target is missed)",
    )  # fmt: skip
    parser.add_argument(
        "--wait-quiet", type=float, default=0.0, metavar="SECONDS",
        help="before each workload, wait up to this long for the machine to be idle",
    )  # fmt: skip
    parser.add_argument("--out", default=str(ROOT / "reports"), help="where the reports go")
    argv = sys.argv[1:]
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that every server, broker and load generator is stopped
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    raise_nofile(NOFILE)  # before any child: they inherit it
    result, code = run(args, argv)
    print(report.markdown_table(result))
    print(json.dumps(result["targets"]))
    print(f"bench: {result['seconds']:,.0f} s; reports in {args.out}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
