"""Client mode, AOI-1 itself: the AOI-1 port listens on loopback only, and the apps the
AOI Client serves share one connection per server.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

from pytest_bdd import step, then

from conformance.client_stage import Stage
from conformance.steps import text
from conformance.steps.client_apps import describe_app, served_by


def _listening_addresses(port: int) -> list[str] | None:
    """Local addresses of the sockets listening on ``port`` (Linux /proc), or None."""
    found: list[str] = []
    seen_table = False
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        path = Path(table)
        if not path.exists():
            continue
        seen_table = True
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "0A":  # 0A: LISTEN
                continue
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(address)
            # /proc shows each 32-bit word in host byte order (little endian here)
            words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
            packed = b"".join(words)
            found.append(str(ipaddress.ip_address(packed if size == 16 else packed[:4])))
    return found if seen_table else None


def _other_addresses() -> list[str]:
    """Non-loopback addresses of this host, to try the AOI-1 port on."""
    found: set[str] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(str(info[4][0]))
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: only the route is chosen
            found.add(probe.getsockname()[0])
        except OSError:
            pass
    return sorted(a for a in found if not ipaddress.ip_address(a.split("%")[0]).is_loopback)


@then(text("the AOI-1 port accepts connections on loopback addresses only [{req:req}]"))
def loopback_only(stage: Stage, req: str) -> None:
    assert stage.process is not None
    port = stage.process.app_port
    listening = _listening_addresses(port)
    if listening is not None and listening:
        others = [a for a in listening if not ipaddress.ip_address(a).is_loopback]
        stage.world.check(
            req,
            not others,
            f"the AOI-1 port {port} listens on {listening}: not loopback only",
        )
    reached = []
    for address in _other_addresses():
        try:
            with socket.create_connection((address, port), timeout=stage.timeout(2)):
                reached.append(address)
        except OSError:
            pass
    stage.world.precondition(
        bool(listening) or bool(_other_addresses()),
        "this host shows no listening sockets (/proc/net/tcp) and has no address but "
        "loopback: the suite cannot tell where AOI-1 listens",
    )
    stage.world.check(
        req,
        not reached,
        f"the AOI-1 port {port} accepted connections on non-loopback addresses {reached}",
    )


@step(
    text(
        'apps "{one:q}" and "{two:q}" are registered through server "{name:q}" on one '
        "connection [{req:req}]"
    )
)
def apps_on_one_connection(stage: Stage, one: str, two: str, name: str, req: str) -> None:
    for alias in (one, two):
        app = stage.app(alias)
        stage.world.found(
            req,
            served_by(stage, app, name),
            f"app {alias} was not registered through server {name}: {describe_app(app)}",
        )
    server = stage.servers[name]

    def summary() -> list[tuple[int, int, list[Any]]]:
        return [
            (c.n, len(c.received("hello")), [f.get("app_id") for f in c.received("register")])
            for c in server.connections
        ]

    seen = stage.read(summary)
    with_hello = [s for s in seen if s[1]]
    both = {stage.app(one).app_id, stage.app(two).app_id}
    stage.world.check(
        req,
        len(with_hello) == 1 and both <= set(with_hello[0][2]),
        f"server {name} saw {len(with_hello)} sessions (connection, hellos, registered apps): "
        f"{seen}; all apps share one connection per server",
    )
