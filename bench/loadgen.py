"""The load generator's processes, for the AOI reference server and for Mosquitto alike.

The generator is ``bench/loadgen.c`` (its comment says what each role does and prints): one
epoll loop a process, one ``recv`` per readable socket, the replies to a read in one
``send``, nothing allocated per message. It costs a small share of what a server spends on
the same notification, so that on a 2-core machine the generator does not set the ceiling.
It is built here, with the machine's C compiler, once per version of its source, into
``~/.cache/aoi-bench/`` (``$XDG_CACHE_HOME`` if set); nothing compiled is kept in the tree.

The parent (``bench.server``, ``bench.aoi_storm``, ``bench.mqtt``) starts one process per
role with :func:`spawn` and talks to it with lines: it reads JSON documents (:func:`line`),
writes commands (``window START END``, ``stats``, ``end T``) and closes stdin to end the
clients (:func:`finish`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

from .machine import cpu_times

SOURCE = Path(__file__).with_name("loadgen.c")
FLAGS = ("-O2", "-Wall")


def binary() -> Path:
    """The compiled generator: built on first use of this version of the source."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join(FLAGS).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aoi-bench"
    built = cache / f"loadgen-{digest}"
    if built.exists():
        return built
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler to build bench/loadgen.c (apt-get install gcc)")
    cache.mkdir(parents=True, exist_ok=True)
    partial = built.with_name(f"{built.name}.{os.getpid()}")
    made = subprocess.run(
        [compiler, *FLAGS, "-o", str(partial), str(SOURCE)], capture_output=True, text=True
    )
    if made.returncode:
        raise RuntimeError(f"{compiler} could not build bench/loadgen.c:\n{made.stderr[-2000:]}")
    partial.replace(built)  # atomic: a concurrent build finds a whole binary or none
    return built


def spawn(role: str, *args: str) -> subprocess.Popen[str]:
    """One generator process: ``aoi-clients``, ``aoi-pusher``, ``mqtt-clients`` or
    ``mqtt-pusher``, with its options."""
    return subprocess.Popen(
        [str(binary()), role, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def line(process: subprocess.Popen[str]) -> dict[str, Any]:
    """The next document the process prints."""
    assert process.stdout is not None
    text = process.stdout.readline()
    if not text:
        raise RuntimeError(f"load generator {process.args[1:]} exited with {process.wait()}")
    document: dict[str, Any] = json.loads(text)
    return document


def command(process: subprocess.Popen[str], text: str) -> None:
    assert process.stdin is not None
    process.stdin.write(text + "\n")
    process.stdin.flush()


def finish(process: subprocess.Popen[str]) -> dict[str, Any]:
    """Close the clients' stdin: their last document (``done``), and the process's end."""
    stdin: IO[str] | None = process.stdin
    assert stdin is not None
    stdin.close()
    done = line(process)
    process.wait(timeout=30)
    assert process.stdout is not None
    process.stdout.close()
    return done


def reap(processes: list[subprocess.Popen[str]]) -> None:
    """Kill whichever of ``processes`` still runs (after a failure: none is left behind),
    and close every pipe to them."""
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def percentiles(values: Sequence[float], scale: float = 1000.0) -> dict[str, float]:
    """p50, p99, p999, max and n, times ``scale`` (s to ms): the value at index int(q * n) of
    the sorted values, as the generator ranks its round trips."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(quantile: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * scale, 3)

    return {"p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "max": at(1.0), "n": len(ordered)}


def latencies(
    pushed: Sequence[dict[str, Any]],
    receipts: dict[str, list[float]],
    names: tuple[str, str],
    during: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Per message accepted (201 / PUBACK; ``during``: accepted in that span of time), the
    client's receipt minus the acceptance, and minus the send stamp its payload carries.
    ``names``: what acceptance and sending are called (``("201", "push_sent")``)."""
    accepted: dict[str, float] = {}
    for p in pushed:
        accepted.update(p["accepted"])
    if during is not None:
        accepted = {i: t for i, t in accepted.items() if during[0] <= t < during[1]}
    after_acceptance = [receipts[i][0] - t for i, t in accepted.items() if i in receipts]
    from_sent = [receipts[i][0] - receipts[i][1] for i in accepted if i in receipts]
    acceptance, sending = names
    figures = {
        "accepted_in_window": len(accepted),
        f"latency_{acceptance}_to_receipt_ms": percentiles(after_acceptance),
        f"latency_{sending}_to_receipt_ms": percentiles(from_sent),
        f"receipt_before_{acceptance}_seen": sum(v < 0 for v in after_acceptance),
        "not_received": sum(i not in receipts for i in accepted),
    }
    if during is not None and during[1] > during[0]:
        figures["accepted_per_s"] = round(len(accepted) / (during[1] - during[0]))
    return figures


def drive(
    server_pid: int,
    holder: subprocess.Popen[str],
    spawn_pushers: Callable[[float, tuple[float, float]], list[subprocess.Popen[str]]],
    seconds: float,
    warmup: float,
    names: tuple[str, str],
    on_window: Callable[[int], None] | None = None,
    others: Mapping[str, Sequence[int]] = MappingProxyType({}),
) -> dict[str, Any]:
    """One throughput or latency run, once the clients of ``holder`` are served:
    ``spawn_pushers(begin, window)`` starts the pushers, which push from ``begin``; the
    figures are counted over ``window`` (``warmup`` s after ``begin``, ``seconds`` long).
    The server's CPU and the generator's (the clients and the pushers) over the window are
    measured from /proc; ``generator_kernel_share`` is the part of the generator's spent in
    the kernel (on loopback, a send also runs the TCP receive path of the peer's socket).
    ``on_window(server_pid)`` is called as the window opens. ``others`` names more
    processes (a server's workers, its Redis) whose CPU over the window is reported too, as
    ``others_cpu_cores`` and ``others_cpu_us_per_notification``, by name."""
    record = False
    begin = time.monotonic() + 1.0  # time for the pushers to connect
    window = (begin + warmup, begin + warmup + seconds)
    command(holder, f"window {window[0]:.6f} {window[1]:.6f}")
    pushers = spawn_pushers(begin, window)
    try:
        record = "--record" in pushers[0].args
        time.sleep(max(0.0, window[0] - time.monotonic()))
        if on_window is not None:
            on_window(server_pid)
        watched = [server_pid, holder.pid, *(p.pid for p in pushers)]
        times_before = [cpu_times(pid) for pid in watched]
        others_before = {name: [cpu_times(pid) for pid in pids] for name, pids in others.items()}
        time.sleep(max(0.0, window[1] - time.monotonic()))
        times = [
            (user - user_before, system - system_before)
            for (user, system), (user_before, system_before) in zip(
                (cpu_times(pid) for pid in watched), times_before, strict=True
            )
        ]
        cpu = [user + system for user, system in times]
        others_cpu = {}
        for name, pids in others.items():
            before = others_before[name]
            spent = [sum(cpu_times(pid)) - sum(b) for pid, b in zip(pids, before, strict=True)]
            others_cpu[name] = sum(spent)
        pushed = [line(p) for p in pushers]
        for p in pushers:
            p.wait(timeout=30)
        time.sleep(1.0)  # the last deliveries
        done = finish(holder)
    finally:
        reap(pushers)
    acked = done["acked_in_window"]
    statuses: Counter[str] = Counter()
    for p in pushed:
        statuses.update(p["statuses"])
    figures: dict[str, Any] = {
        "window_s": seconds,
        "accepted_per_s": round(sum(p["accepted_in_window"] for p in pushed) / seconds),
        "acked_per_s": round(acked / seconds),
        "server_cpu_cores": round(cpu[0] / seconds, 2),
        "acked_per_server_cpu_s": round(acked / cpu[0]) if cpu[0] else None,
        "server_cpu_us_per_notification": round(cpu[0] / acked * 1e6, 1) if acked else None,
        "generator_cpu_cores": {"clients": round(cpu[1] / seconds, 3),
                                "pushers": [round(c / seconds, 3) for c in cpu[2:]]},
        "generator_cpu_us_per_notification": round(sum(cpu[1:]) / acked * 1e6, 2)
        if acked else None,
        "generator_kernel_share": round(sum(t[1] for t in times[1:]) / sum(cpu[1:]), 2)
        if sum(cpu[1:]) else None,
        "statuses": dict(statuses), "late_pushes": sum(p["late"] for p in pushed),
        "lost_connections": sum(p["lost_connections"] for p in pushed),
        "sessions_lost": done["sessions_lost"], "duplicates": done["duplicates"],
    }  # fmt: skip
    if others:
        figures["others_cpu_cores"] = {n: round(c / seconds, 3) for n, c in others_cpu.items()}
        figures["others_cpu_us_per_notification"] = {
            n: round(c / acked * 1e6, 1) if acked else None for n, c in others_cpu.items()
        }
    if record:
        figures.update(latencies(pushed, done["receipts"], names))
        figures["push_round_trip_ms"] = [p["round_trip_ms"] for p in pushed]
    return figures
