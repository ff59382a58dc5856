"""The AOI Server under attack: a real ``aoi server`` process, as an operator starts it.

A crash is the process ending; :meth:`Target.alive` and :meth:`Target.serves` tell whether
it still runs and still answers (health from loopback, a hello welcomed). The
configuration is written from keyword arguments (``max_connections``,
``request_head_timeout_s``, ``max_sessions``...), with ``clients`` AOI Clients
``dev-0`` .. (credential ``secret-N``) and one server app, :data:`KEY`.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import raw

ROOT = Path(__file__).resolve().parents[2]
KEY = "hostile-key-0123456789"
APP = "com.example.hostile"
SERVER_KEYS = ("handshake_timeout_s", "request_head_timeout_s", "request_body_timeout_s",
               "max_connections", "keepalive_s", "max_apps")  # fmt: skip


def config(state: Path, clients: int, **settings: Any) -> str:
    server = {"id": "hostile", "listen": "127.0.0.1:0", "db": str(state / "aoi-server.db")}
    server |= {k: v for k, v in settings.items() if k in SERVER_KEYS}
    overload = {"hello_rate_per_s": 1e6, "hello_burst": 1_000_000, "max_loop_lag_ms": 1e6}
    overload |= {k: v for k, v in settings.items() if k not in SERVER_KEYS}
    lines = ["[server]", *(f"{k} = {json.dumps(v)}" for k, v in server.items())]
    lines += ["[overload]", *(f"{k} = {json.dumps(v)}" for k, v in overload.items())]
    lines += ["[security]", "failed_hello_limit = 1000000"]
    lines += [f'[[server_apps]]\nname = "hostile"\nkey = "{KEY}"\napp_ids = ["{APP}"]',
              "rate_per_s = 1000000.0\nburst = 1000000"]  # fmt: skip
    lines += [f'[[clients]]\nclient_id = "dev-{n}"\ncredential = "secret-{n}"'
              for n in range(clients)]  # fmt: skip
    return "\n".join(lines) + "\n"


@dataclass
class Target:
    process: subprocess.Popen[bytes]
    folder: Path
    urls: dict[str, str]
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.urls["http"])
        return parts.hostname or "127.0.0.1", parts.port or 80

    @property
    def http(self) -> str:
        return self.urls["http"]

    @property
    def aoi2(self) -> str:
        return self.urls["aoi2"]

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def health(self, wait: float = 5.0) -> int | None:
        """The status of ``GET /v1/health`` from loopback, None without an answer."""
        answer = raw.exchange(
            self.address, b"GET /v1/health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            wait=wait,
        )  # fmt: skip
        return answer.status

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


@contextmanager
def started(
    folder: Path,
    *,
    state: Path | None = None,
    clients: int = 100,
    open_files: int | None = None,
    **settings: Any,
) -> Iterator[Target]:
    """``aoi server`` with this configuration, its store in ``state`` (default: a folder in
    ``folder``), stopped (SIGTERM) afterwards. ``open_files``: its RLIMIT_NOFILE, soft and
    hard (to make accept(2) run out of descriptors). Its output goes through a pipe to
    ``folder/server.log`` (a pipe: the store's file size limit must not stop its logs)."""
    state = state or folder / "state"
    state.mkdir(parents=True, exist_ok=True)
    (folder / "server.toml").write_text(config(state, clients, **settings))
    ready = folder / "ready.json"
    ready.unlink(missing_ok=True)
    log = folder / "server.log"

    def limit() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    process = subprocess.Popen(
        [sys.executable, "-m", "aoi", "server", "--config", str(folder / "server.toml"),
         "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, preexec_fn=limit,
    )  # fmt: skip
    copier = threading.Thread(target=_copy, args=(process, log), daemon=True)
    copier.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.02)
        yield Target(process, folder, json.loads(ready.read_text()), log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        copier.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def _copy(process: subprocess.Popen[bytes], log: Path) -> None:
    assert process.stdout is not None
    with log.open("ab", buffering=0) as sink:
        for line in process.stdout:
            sink.write(line)
