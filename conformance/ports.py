"""Free loopback ports for the servers and clients the suite starts.

A port is picked at random below the kernel's ephemeral range and tried with a bind: the
kernel never hands it out on its own (to ``bind(0)`` or as the source port of a
connection), so between the pick and the moment the started process binds it, only
another suite run picking the same number at random can take it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000
_handed_out: set[int] = set()  # by this process; whoever got one may not have bound it yet


def _below_ephemeral() -> int:
    try:
        return int(EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(host: str = "127.0.0.1") -> int:
    high = _below_ephemeral() - 1
    for _ in range(200):
        port = random.randint(LOWEST, high) if high > LOWEST else 0
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            port = int(s.getsockname()[1])
        _handed_out.add(port)
        return port
    raise OSError(f"no free port on {host} between {LOWEST} and {high}")
