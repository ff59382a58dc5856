"""The installed ``aoi`` command, run in a subprocess as a user runs it."""

from __future__ import annotations

import importlib.metadata
import re
import socket
import subprocess
import sys
from pathlib import Path

AOI = Path(sys.executable).with_name("aoi")  # the console script beside this Python
GUIDE = Path(__file__).parents[2] / "docs" / "operations.md"
A_REPR = re.compile(r"^[A-Za-z_]\w*\(.*\)$|<[\w.]+ object at 0x")  # OSError('...'), <x object>


def aoi(*args: str, timeout: float = 60, **options: object) -> subprocess.CompletedProcess[str]:
    """``aoi ARGS...`` to its end: exit status, stdout and stderr."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [str(AOI), *args], capture_output=True, text=True, timeout=timeout, check=False,
        **options,
    )  # fmt: skip


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single line the command wrote on stderr (and nothing else there)."""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{done.stderr}"
    return lines[0]


def closed_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def installed_version() -> str:
    """The version of the installed distribution that holds the ``aoi`` package."""
    (distribution, *_) = importlib.metadata.packages_distributions()["aoi"]
    return importlib.metadata.version(distribution)


def guide_section(number: str) -> str:
    """Section ``number`` of docs/operations.md (e.g. ``13.6``), up to the next one."""
    text = GUIDE.read_text(encoding="utf-8")
    start = re.search(rf"^#+ {re.escape(number)} .*$", text, re.MULTILINE)
    assert start is not None, f"docs/operations.md has no section {number}"
    end = re.compile(r"^#{1,3} \d", re.MULTILINE).search(text, start.end())
    return text[start.start() : end.start() if end else len(text)]
