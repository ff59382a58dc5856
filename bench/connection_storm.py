"""A connection storm, measured the same way for any server: many clients connecting at
once while some already connected ones receive pushes at a fixed rate.

The caller (:func:`bench.aoi_storm.storm`, :func:`bench.mqtt.storm`) starts the server and
the steady clients, and gives the ways to start the pusher and the storm processes (all of
them :mod:`bench.loadgen` processes). Each storm process prepares its sockets, says
``prepared``, and at the storm's instant issues every ``connect()``; a client is served when
its session is (AOI: ``registered``; MQTT: SUBACK). Reported: ``all_connected_s``, from the
storm's instant until the last storm client was served; ``served_ms``, the percentiles of
that per client; the server's and the generator's CPU meanwhile; and for the steady
clients, per message accepted during the storm (``steady_during_storm``: from its start
until the last client was served, and at least :data:`DURING_AT_LEAST_S`) and before it
(``steady_before_storm``), the time from its acceptance to its receipt. A push that found
no free connection (AOI) or window (MQTT) at its due time is not sent but counted
(``late_pushes``): the rate the server sustained during the storm shows in
``accepted_during_storm_per_s``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

from . import loadgen
from .loadgen import finish, line, reap
from .machine import (
    cpu_seconds,
    machine_busy_since,
    machine_jiffies,
    tcp_counters,
    tcp_counters_since,
)

Process = subprocess.Popen[str]
DURING_AT_LEAST_S = 0.25  # a storm of a few clients is over in milliseconds: few pushes in it


def measure(
    server_pid: int,
    holder: Process,
    start_pusher: Callable[[float, float], Process],
    start_stormer: Callable[[int, int, float], Process],
    clients: int,
    *,
    processes: int,
    baseline: float,
    after: float,
    timeout: float,
    names: tuple[str, str],
) -> dict[str, Any]:
    """``holder``: the steady clients, served; ``start_pusher(begin, end)`` pushes to them
    at a fixed rate from ``begin``; ``start_stormer(first, count, at)`` connects the storm
    clients ``first`` .. ``first + count - 1`` at ``at``."""
    processes = max(1, min(processes, clients))
    begin = time.monotonic() + 1.0 + 0.002 * clients  # pusher and storm sockets ready
    storm_at = begin + baseline
    pusher = start_pusher(begin, storm_at + timeout + after + 30)
    share, extra = divmod(clients, processes)
    stormers = []
    for k in range(processes):
        stormers.append(start_stormer(k * share + min(k, extra), share + (k < extra), storm_at))
    try:
        for p in stormers:
            assert line(p)["event"] == "prepared"
        if time.monotonic() > storm_at - 0.2:
            raise RuntimeError("the storm processes were not ready before the storm")
        time.sleep(max(0.0, storm_at - time.monotonic()))
        watched = [server_pid, holder.pid, pusher.pid, *(p.pid for p in stormers)]
        cpu_before = [cpu_seconds(pid) for pid in watched]
        tcp_before, machine = tcp_counters(), machine_jiffies()
        stormed = [line(p) for p in stormers]
        durations = [d for reply in stormed for d in reply["durations"]]
        storm_end = storm_at + max(durations) if durations else max(r["done"] for r in stormed)
        cpu = [cpu_seconds(pid) - c for pid, c in zip(watched, cpu_before, strict=True)]
        tcp, machine_busy = tcp_counters_since(tcp_before), machine_busy_since(machine)
        time.sleep(max(0.0, storm_end + after - time.monotonic()))
        loadgen.command(pusher, f"end {time.monotonic():.6f}")
        pushed = line(pusher)
        pusher.wait(timeout=30)
        time.sleep(1.0)  # the last deliveries
        done = finish(holder)
        for p in stormers:
            finish(p)
    finally:
        reap([*stormers, pusher, holder])
    connected = sum(reply["connected"] for reply in stormed)
    errors: dict[str, int] = {}
    for reply in stormed:
        for why, n in reply["errors"].items():
            errors[why] = errors.get(why, 0) + n
    during = loadgen.latencies(
        [pushed], done["receipts"], names, (storm_at, max(storm_end, storm_at + DURING_AT_LEAST_S))
    )
    return {
        "clients": clients,
        "connected": connected,
        "failed": clients - connected,
        "errors": errors,
        "all_connected_s": round(storm_end - storm_at, 3) if connected == clients else None,
        "served_ms": loadgen.percentiles(durations),
        "server_cpu_s_during_storm": round(cpu[0], 2),
        "server_cpu_ms_per_client": round(cpu[0] / clients * 1000, 3) if clients else None,
        "generator_cpu_s_during_storm": {
            "steady_clients": round(cpu[1], 3),
            "pusher": round(cpu[2], 3),
            "storm_processes": [round(c, 3) for c in cpu[3:]],
        },
        "machine_busy_share_during_storm": machine_busy,
        "tcp_counters_during_storm": tcp,
        "late_pushes": pushed["late"],
        "accepted_during_storm_per_s": during.get("accepted_per_s"),
        "steady_during_storm": during,
        "steady_before_storm": loadgen.latencies(
            [pushed], done["receipts"], names, (begin, storm_at)
        ),
        "steady_sessions_lost": done["sessions_lost"],
        "steady_duplicates": done["duplicates"],
        "statuses": pushed["statuses"],
    }
