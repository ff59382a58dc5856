"""Measurements of the machine and of its processes, shared by the benchmarks.

The open-file limit (:func:`raise_nofile`), a process's CPU time (:func:`cpu_seconds`,
:func:`cpu_times`), how
busy all the machine's CPUs were (:func:`machine_jiffies`, :func:`machine_busy_since`) and the
kernel's TCP counters (:func:`tcp_counters`, :func:`tcp_counters_since`); from ``/proc``,
Linux only.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource


def raise_nofile(target: int | None = None) -> int:
    """Raise RLIMIT_NOFILE to ``target`` (root may raise the hard limit; None: to the hard
    limit); returns the soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if target is None:
        target = hard
    if soft >= target:
        return soft
    if hard != resource.RLIM_INFINITY and hard < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return target
        except (ValueError, OSError):
            target = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process."""
    return sum(cpu_times(pid))


def machine_jiffies() -> tuple[int, int]:
    """(all, idle + iowait) CPU jiffies of the machine, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(field) for field in stat.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]


def machine_busy_since(before: tuple[int, int]) -> float:
    """Share of the machine's CPU time (all cores) that was busy since ``before``."""
    total, idle = machine_jiffies()
    elapsed = total - before[0]
    return round(1 - (idle - before[1]) / elapsed, 3) if elapsed > 0 else 0.0


TCP_COUNTERS = (
    "Tcp.RetransSegs", "TcpExt.TCPTimeouts", "TcpExt.ListenOverflows", "TcpExt.ListenDrops",
    "TcpExt.SyncookiesSent", "TcpExt.TCPBacklogDrop",
)  # fmt: skip


def tcp_counters() -> dict[str, int]:
    """The machine's TCP counters of :data:`TCP_COUNTERS` (/proc/net/snmp and netstat)."""
    values: dict[str, int] = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        with contextlib.suppress(OSError), open(path) as table:
            lines = table.read().splitlines()
        for names, numbers in itertools.pairwise(lines):
            head, _, rest = names.partition(":")
            if not numbers.startswith(head + ":") or names == numbers:
                continue
            for name, number in zip(rest.split(), numbers.partition(":")[2].split(), strict=False):
                key = f"{head}.{name}"
                if key in TCP_COUNTERS and number.lstrip("-").isdigit():
                    values[key] = int(number)
    return values


def tcp_counters_since(before: dict[str, int]) -> dict[str, int]:
    after = tcp_counters()
    return {key: after[key] - before.get(key, 0) for key in after}
