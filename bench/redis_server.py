"""A private redis-server for tests and benchmarks, run by ``scripts/redis run`` (which
installs Debian's redis-server first where it is missing) with its data in a directory.

The script stays in the foreground as redis-server's parent and this process as the
script's, so every redis-server started here is stopped and reaped here.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "redis"
Fsync = Literal["always", "everysec"]


class RedisServer:
    """One redis-server of ``scripts/redis`` in ``directory``; it keeps its port and its
    data across :meth:`kill` and :meth:`start`."""

    def __init__(self, directory: Path, fsync: Fsync = "always") -> None:
        self.directory = directory
        self.fsync = fsync
        self.url = ""
        self.returncode: int | None = None  # of the script, once it exited
        self._script: subprocess.Popen[str] | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def pid(self) -> int:
        return int((self.directory / "redis.pid").read_text())

    def start(self) -> str:
        """Start it (again, after :meth:`kill` or :meth:`stop`) and wait until it answers."""
        assert self._script is None, "already started"
        script = subprocess.Popen(
            [SCRIPT, "run", self.directory, "--fsync", self.fsync],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert script.stdout is not None
        url = script.stdout.readline().strip()
        if not url.startswith("redis://"):
            _, errors = script.communicate(timeout=30)
            raise RuntimeError(f"scripts/redis run failed ({script.returncode}): {errors}")
        self._script, self.url = script, url
        return url

    def kill(self) -> None:
        """SIGKILL: redis-server dies as in a crash, with no chance to write anything more."""
        os.kill(self.pid, signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        """SIGTERM to the script, which passes it on: redis-server shuts down cleanly."""
        if self._script is not None:
            self._script.send_signal(signal.SIGTERM)
            self._reap()

    def _reap(self) -> None:
        assert self._script is not None
        self._script.communicate(timeout=30)
        self.returncode = self._script.returncode
        self._script = None


@contextmanager
def redis_server(directory: Path, fsync: Fsync = "always") -> Iterator[RedisServer]:
    server = RedisServer(directory, fsync)
    server.start()
    try:
        yield server
    finally:
        server.stop()
