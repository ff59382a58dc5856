"""An ``aoi server`` run as an operator runs it: what its log says about sessions, drain and
shutdown, what ``/metrics`` and ``/v1/health`` show, and ``aoi server drain`` against it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from aoi.net.client import connect
from aoi.net.websocket import ConnectionClosed, WebSocket

from .command import A_REPR, AOI, aoi, guide_section, installed_version

CONFIG = """
[server]
id = "a"
listen = "127.0.0.1:0"
db = "aoi.db"

[overload]
shed = true
shed_rate_per_s = 100

[[clients]]
client_id = "device-1"
credential = "secret"

[[clients]]
client_id = "device-2"
credential = "secret"
"""
REASONS = ("invalid_credentials", "forbidden", "overloaded", "unsupported_version",
           "rate_limited", "draining")  # fmt: skip
STATUSES = ("201", "400", "401", "403", "404", "410", "413", "429", "503")


@asynccontextmanager
async def session(url: str, client_id: str, credential: str = "secret") -> AsyncIterator[Any]:
    """A connection that said ``hello``, and the server's answer; closed at the end."""
    ws = await connect(url, "aoi.v1")
    try:
        await ws.send(json.dumps({"type": "hello", "version": 1, "client_id": client_id,
                                  "credential": credential}))  # fmt: skip
        yield ws, json.loads(await ws.receive())
    finally:
        await ws.close()


async def until_closed(ws: WebSocket) -> list[str]:
    """The types of what the server still sends, until it closes."""
    received = []
    with trio.fail_after(10):
        try:
            while True:
                received.append(json.loads(await ws.receive())["type"])
        except ConnectionClosed:
            return received


def samples(http: str) -> dict[str, float]:
    text = httpx.get(http + "/metrics").text
    return {
        key: float(value)
        for key, value in (line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
    }


def rejected(figures: dict[str, float]) -> dict[str, float]:
    return {r: figures[f'aoi_hello_rejected_total{{reason="{r}"}}'] for r in REASONS}


def drain(http: str, *flags: str) -> str:
    done = aoi("server", "drain", "--admin", http, *flags)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return done.stdout.strip()


def test_sessions_drain_and_shutdown_as_an_operator_sees_them(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(CONFIG)
    ready, log = tmp_path / "ready.json", tmp_path / "server.log"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [str(AOI), "server", "--config", str(tmp_path / "server.toml"),
             "--ready-file", str(ready)],
            stderr=stderr,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        urls = json.loads(ready.read_text())
        trio.run(operate, urls["aoi2"], urls["http"], server)
        assert server.wait(timeout=20) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    events = [(e["event"], e.get("client"), e.get("reason")) for e in entries]
    assert events == [
        ("listening", None, None),
        ("session_opened", "device-1", None),
        ("session_rejected", "intruder", "invalid_credentials"),
        ("drain_mode_on", None, None),
        ("session_redirected", "device-1", "maintenance"),
        ("session_closed", "device-1", "redirect"),
        ("session_rejected", "device-2", "overloaded"),
        ("drain_mode_off", None, None),
        ("session_opened", "device-2", None),
        ("shutting_down", None, None),
        ("session_closed", "device-2", "bye"),
        ("stopped", None, None),
    ]
    assert entries[6]["detail"] == "overloaded: draining" and entries[9]["signal"] == "SIGTERM"
    assert (entries[5]["code"], entries[10]["code"]) == (4503, 1001)
    documented = guide_section("10.2")
    for entry in entries:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", entry["event"]) and entry["level"] == "info"
        assert f"`{entry['event']}`" in documented, entry["event"]
        assert not [v for v in entry.values() if isinstance(v, str) and A_REPR.search(v)]


async def operate(aoi2: str, http: str, server: subprocess.Popen[bytes]) -> None:
    async with session(aoi2, "device-1") as (first, welcome):
        assert welcome["type"] == "welcome"
        async with session(aoi2, "intruder", "guess") as (_, refused):
            assert refused["reason"] == "invalid_credentials"
        health = httpx.get(http + "/v1/health").json()
        assert (health["status"], health["version"]) == ("ok", installed_version())
        figures = samples(http)
        assert figures[f'aoi_build_info{{version="{installed_version()}"}}'] == 1
        assert figures["process_cpu_seconds_total"] > 0 and figures["process_open_fds"] > 0
        assert any(key.startswith("python_info{") for key in figures)
        assert rejected(figures) == {r: float(r == "invalid_credentials") for r in REASONS}
        assert [figures[f'aoi_push_requests_total{{status="{s}"}}'] for s in STATUSES] == [0] * 9
        assert figures["aoi_hello_accepted_total"] == 1

        assert drain(http) == '{"draining":true}'
        assert await until_closed(first) == ["redirect"]
    async with session(aoi2, "device-2") as (_, refused):
        assert (refused["type"], refused["reason"]) == ("reject", "overloaded")
    figures = samples(http)
    assert rejected(figures) == {
        r: float(r in ("invalid_credentials", "draining")) for r in REASONS
    }
    assert (figures["aoi_overloaded"], figures["aoi_draining"]) == (0, 1)
    assert figures["aoi_redirects_total"] == 1
    assert httpx.get(http + "/v1/health").json()["status"] == "draining"

    assert drain(http, "--off") == '{"draining":false}'
    async with session(aoi2, "device-2") as (last, welcome):
        assert welcome["type"] == "welcome"
        server.send_signal(signal.SIGTERM)
        assert await until_closed(last) == ["bye"]
