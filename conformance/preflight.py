"""Before any scenario: what the selected scenarios need of the target, and whether it is there.

Each server scenario talks to the instance of one profile (``Given the AOI Server under
test for "overload"``, else ``main``); the crash scenario also runs the IXIT's
``[restart] command``; client scenarios start the client command. Every AOI-2 and AOI-3
address the run needs gets a TCP connection (at once, within a few seconds in all), and
every command's program is looked up. What cannot be reached is said in one line, and the
scenarios that need it are ERROR without running: a target that is not there is never
judged (:class:`~conformance.verdicts.TargetUnreachable`).
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import trio

from conformance.ixit import Endpoint

PROFILE_STEP = re.compile(r'the AOI Server under test for "([^"]+)"')
CRASH_STEP = "the server crashes and restarts"
CONNECT_S = 5.0  # per address, all at once; scaled by --timeout-scale
RESTART = "restart command"  # keys of what is unreachable, besides profiles
CLIENT = "client command"


def profile_of(steps: Iterable[str]) -> str:
    """The profile a server scenario talks to: its last 'AOI Server under test for' step."""
    profile = "main"
    for step in steps:
        if match := PROFILE_STEP.search(step):
            profile = match[1]
    return profile


@dataclass
class Needs:
    """What the selected scenarios that apply need."""

    profiles: set[str] = field(default_factory=set)
    restart: bool = False
    client: bool = False

    def add(self, side: str, steps: list[str]) -> None:
        if side == "C":
            self.client = True
            return
        self.profiles.add(profile_of(steps))
        self.restart = self.restart or CRASH_STEP in steps


def unreachable(
    endpoints: dict[str, Endpoint],
    *,
    restart_command: str = "",
    client_command: str = "",
    timeout_scale: float = 1.0,
) -> dict[str, str]:
    """Why each profile (by its endpoint), and the commands given, cannot be reached:
    ``{profile: "ws://... (connection refused)", "restart command": "..."}``; empty when
    every one can."""
    found: dict[str, str] = {}
    for name, command in ((RESTART, restart_command), (CLIENT, client_command)):
        if command and (problem := _program_missing(command)):
            found[name] = problem
    addresses: dict[tuple[str, int], list[str]] = {}  # -> the profiles that use it
    for profile, endpoint in sorted(endpoints.items(), key=lambda p: (p[0] != "main", p[0])):
        ca = endpoint.ca_file
        if endpoint.aoi2.startswith("wss:") and ca is not None and not Path(ca).is_file():
            found[profile] = f"{endpoint.aoi2} (its ca_file {ca} does not exist)"
            continue
        for url in (endpoint.aoi2, endpoint.http):
            addresses.setdefault(_address(url), []).append(profile)
    reasons = trio.run(_probe_all, list(addresses), CONNECT_S * timeout_scale)
    for address, reason in reasons.items():
        for profile in addresses[address]:
            if reason and profile not in found:
                found[profile] = f"{endpoints[profile].aoi2} ({reason})"
    return found


def describe(found: dict[str, str]) -> str:
    """The one line that says what cannot be reached."""
    order = sorted(found, key=lambda name: (name != "main", name in (RESTART, CLIENT), name))
    shown: list[str] = []
    for name in order:  # profiles that fall back to the target are the target
        if name == "main" or name in (RESTART, CLIENT) or found[name] != found.get("main"):
            shown.append(f"{name} {found[name]}")
    return "target unreachable: " + "; ".join(shown)


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    secure = parts.scheme in ("wss", "https")
    return parts.hostname or "localhost", parts.port or (443 if secure else 80)


def _program_missing(command: str) -> str:
    try:
        words = shlex.split(command)
    except ValueError as e:
        return f"cannot be split into words: {e}"
    if not words:
        return "is empty"
    program = words[0]
    if "{" in program or shutil.which(program) or Path(program).is_file():
        return ""
    return f"{program!r} not found"


async def _probe_all(
    addresses: list[tuple[str, int]], timeout: float
) -> dict[tuple[str, int], str]:
    reasons: dict[tuple[str, int], str] = {}

    async def probe(host: str, port: int) -> None:
        reasons[(host, port)] = f"no TCP connection within {timeout:.0f} s"
        with trio.move_on_after(timeout):
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError as e:
                reasons[(host, port)] = _reason(host, e)
                return
            await stream.aclose()
            reasons[(host, port)] = ""

    async with trio.open_nursery() as nursery:
        for host, port in addresses:
            nursery.start_soon(probe, host, port)
    return reasons


def _reason(host: str, error: BaseException) -> str:
    """The first cause that says something: trio wraps each address's failure."""
    cause: BaseException = error
    while True:
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve {host}"
        if isinstance(cause, BaseExceptionGroup):
            cause = cause.exceptions[0]
        elif isinstance(cause.__cause__, BaseException):
            cause = cause.__cause__
        else:
            break
    text = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
    return text.rsplit(": ", 1)[-1].lower()  # trio's "Error connecting to (...): " prefix
