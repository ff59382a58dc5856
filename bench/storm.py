"""Storm: reference AOI Clients moved off an overloaded server onto its two alternates.

    python -m bench.storm [--clients 1000] [--spread-s 0] [--dwell-s 4] [--capacity N]
                          [--returning N] [--seed 1]

Everything on 127.0.0.1, in real time:

- Server A (priority 1) is overloaded: it refuses every ``hello`` with
  ``reject{overloaded, retry_after_s, servers: [B, C]}`` and closes 4503. It is a small
  recording AOI-2 server written against the wire (a TCP listener, wsproto, JSON), in this
  process so that its clock is the clients' clock. It keeps, per client_id, when each hello
  arrived, when it handed the reject to the socket and the ``retry_after_s`` it gave
  (uniform in 0.5..2.5 s, to the millisecond).
- Servers B and C (priority 2) are real reference servers (``python -m aoi server``, one
  process each) with ``max_sessions = ceil(clients / 2)``: together just enough for
  everybody, so the clients that pick a full one last are refused there and move to the
  other. Every other overload setting is the reference default.
- ``clients`` reference AOI Clients (:class:`aoi.client.daemon.Daemon`), all in this process,
  each with its own client_id, credential and state directory. Their connector is
  ``aoi.net.client.connect`` (real loopback TCP and WebSocket) behind a tap that notes when
  each ``hello`` leaves and each ``welcome``/``reject``/``redirect`` arrives. One app each,
  speaking AOI-1 frames to the daemon's own AOI-1 handler over an in-memory stream (no socket
  per app); all apps send ``app_register`` at once (``--spread-s``: evenly over a window).
- Policy: A, then B and C weighted at random (``priority_weighted``), ``next_server``,
  ``max_servers_tried`` 3, backoff ``initial_ms`` 1 (the jitter before the next candidate is
  at most 1 ms: the figures are the machinery's, not the policy's waits). A tenth of the
  clients have ``return_to_preferred_after_s`` 1: once served on B or C they keep coming back
  to A, which refuses them again, so "no hello before retry_after" is put to the test beyond
  the first refusal (all of them doing so would double the load of this one process).
- The clients' ``welcome_timeout_s`` is 30 s instead of 10: a thousand devices share one
  CPU here, and connecting to A in the first second of the storm can take longer than a real
  device's timeout allows (it then counts A as unreachable and skips it).

Measured: the time from the first ``app_register`` until every app is served or told
``connection_failed{fallback: direct}``; per served app the reallocation time, from the moment
A hands its last reject before that to the socket until the app receives ``app_registered`` or
``registration_changed``; served and direct counts; early retries, i.e. hellos to a server
before the end of the cool-down that server gave that client (at A from A's own records, at
B and C from the tap, on the client's side); a few pushes through AOI-3 to served apps'
endpoints. Prints one JSON object (:func:`run` returns it as a dict).

All clients run in one trio process, so in a storm they also queue for one CPU (which the
servers and whatever else runs on the machine share): an app's reallocation time includes
waiting for the others' work, and in an all-at-once storm the clients move in lockstep, each
one finishing about when the last does. ``client_process_cpu_s`` (this process's CPU time
from the first app_register to the last answer, A's side included) over ``clients`` is the
machinery's cost per client; ``--spread-s`` spreads the arrivals, and at a rate this process
keeps up with, the reallocation times are those of the machinery and the servers alone.

Three things serve only to fit a thousand devices into one process, and change nothing of
what a client does: the schema codecs are compiled once and shared by all daemons
(:func:`shared_codecs`; one daemon compiles its two in ~12 ms, which for 1,000 is 12 s of
set-up; a codec is immutable once built); the cyclic garbage collector is off from the first
app_register to the end (one heap of a thousand daemons made full collections of up to
0.5 s, a pause no device with its own small heap would see; reference counting still frees
nearly everything, and the run stays under 200 MB); the clients' state directories are in
``/dev/shm`` when there is one (a thousand devices would not share one disk). At the end the
clients stop as they do on exit (``Daemon.stop``: ``bye``), then the servers are killed.
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import json
import logging
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import httpx
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, TextMessage
from wsproto.events import Message as WsMessage
from wsproto.events import Request as WsRequest
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from aoi.client.config import ClientConfig, ProviderConfig
from aoi.client.daemon import Daemon
from aoi.client.provisioning import Fetched
from aoi.core.codec import Codec
from aoi.net.client import connect as ws_connect
from aoi.net.websocket import ConnectionClosed, WebSocket

from .machine import raise_nofile

PROVIDER = "storm.example"
APP_ID = "com.example.storm"
SERVER_APP_KEY = "storm-server-app-key-0123456789"
TARGET_P99_MS = 50.0
READY_WAIT_S = 20.0


@dataclass(frozen=True, slots=True)
class Settings:
    clients: int = 1000
    capacity: int | None = None  # max_sessions of B and of C; None: ceil(clients / 2)
    server_retry_after_s: float | None = None  # B's and C's [overload] retry_after_s (30)
    a_retry_after_s: tuple[float, float] = (0.5, 2.5)  # A's retry_after_s: uniform in
    initial_ms: int = 1  # backoff.initial_ms: the jitter before the next candidate
    max_ms: int = 1000  # backoff.max_ms: background rounds after a failed round
    return_to_preferred_after_s: int = 1  # for the returning clients; the others: 0 (never)
    returning: int | None = None  # clients that come back to A; None: a tenth of them
    spread_s: float = 0.0  # app_register sent evenly over this window (0: all at once)
    dwell_s: float = 4.0  # run on after the last answer: the returning clients come back
    timeout_s: float = 40.0  # every app answered by then, or answered_at stays None
    welcome_timeout_s: float = 30.0  # the clients' (default 10 s)
    pushes: int = 20  # AOI-3 pushes to that many served apps, each must reach its app
    seed: int = 1

    @property
    def max_sessions(self) -> int:
        return self.capacity if self.capacity is not None else math.ceil(self.clients / 2)

    @property
    def returners(self) -> int:
        return self.returning if self.returning is not None else math.ceil(self.clients / 10)


# --- server A: overloaded, on the wire only ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    hello_at: float  # the hello arrived (trio clock)
    refused_at: float  # the reject was handed to the socket
    retry_after_s: float


class OverloadedServer:
    """Refuses every hello with ``reject{overloaded}``; remembers whom, when, for how long.

    Its accept loop takes every pending connection at each turn (``trio.serve_listeners``
    takes one per pass of the scheduler: one per thousand tasks run, in this process).
    """

    def __init__(self, server_id: str, retry_after_s: tuple[float, float], seed: int) -> None:
        self.id = server_id
        self.retry_after_s = retry_after_s
        self.rng = random.Random(seed)
        self.url = ""
        self.alternates: list[str] = []
        self.refusals: dict[str, list[Refusal]] = defaultdict(list)
        self.anomalies: list[str] = []  # anything but a hello as first frame, etc.

    async def serve(self, nursery: trio.Nursery) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        listener.setblocking(False)
        self.url = f"ws://127.0.0.1:{listener.getsockname()[1]}/aoi"
        nursery.start_soon(self._accept, listener, nursery)

    async def _accept(self, listener: socket.socket, nursery: trio.Nursery) -> None:
        with listener:
            while True:
                await trio.lowlevel.wait_readable(listener)
                while True:
                    try:
                        sock, _ = listener.accept()
                    except BlockingIOError:
                        break
                    except (ConnectionAbortedError, InterruptedError):
                        continue
                    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
                    nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        text: list[str] = []
        try:
            with trio.fail_after(30):
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    ws.receive_data(data)
                    for event in ws.events():
                        if isinstance(event, WsRequest):
                            if "aoi.v1" not in event.subprotocols:
                                self.anomalies.append(f"subprotocols {event.subprotocols}")
                            await stream.send_all(ws.send(AcceptConnection(subprotocol="aoi.v1")))
                        elif isinstance(event, TextMessage):
                            text.append(event.data)
                            if event.message_finished:
                                await self._hello("".join(text), ws, stream)
                                return
                        elif isinstance(event, CloseConnection):
                            return
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        except (ValueError, LocalProtocolError, RemoteProtocolError) as exc:
            self.anomalies.append(f"{type(exc).__name__}: {exc}")
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await stream.aclose()

    async def _hello(self, frame: str, ws: WSConnection, stream: trio.SocketStream) -> None:
        hello_at = trio.current_time()
        message = json.loads(frame)
        if not isinstance(message, dict) or message.get("type") != "hello":
            self.anomalies.append(f"first frame is not a hello: {frame:.200}")
            await stream.send_all(ws.send(CloseConnection(code=4400, reason="hello expected")))
            return
        retry = round(self.rng.uniform(*self.retry_after_s), 3)
        reject = {
            "type": "reject", "reason": "overloaded", "retry_after_s": retry,
            "detail": "storm: server A refuses everybody",
            **({"servers": self.alternates} if self.alternates else {}),
        }  # fmt: skip
        data = ws.send(WsMessage(data=json.dumps(reject)))
        data += ws.send(CloseConnection(code=4503, reason="overloaded"))
        refusal = Refusal(hello_at, trio.current_time(), retry)
        self.refusals[str(message.get("client_id"))].append(refusal)
        await stream.send_all(data)

    def early_retries(self) -> list[dict[str, Any]]:
        """Hellos that arrived before the end of the cool-down this server gave that client."""
        early = []
        for client_id, refusals in self.refusals.items():
            ordered = sorted(refusals, key=lambda r: r.hello_at)
            for before, after in itertools.pairwise(ordered):
                not_before = before.refused_at + before.retry_after_s
                if after.hello_at < not_before:
                    early.append({"server": self.id, "client_id": client_id,
                                  "early_by_s": round(not_before - after.hello_at, 6)})  # fmt: skip
        return early


# --- servers B and C: real reference servers ---------------------------------------------


@dataclass
class ReferenceServer:
    id: str
    process: trio.Process
    aoi2: str
    http: str
    log: Path

    async def metrics(self) -> dict[str, float]:
        """The ``aoi_`` series of ``/metrics``, summed over their labels, by name."""
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(self.http + "/metrics")).text
        values: dict[str, float] = defaultdict(float)
        for line in text.splitlines():
            if line.startswith("aoi_") and " " in line:
                name, value = line.rsplit(" ", 1)
                values[name.split("{", 1)[0]] += float(value)
        return dict(values)


def identity(n: int) -> tuple[str, str]:
    """Client number ``n``'s client_id and credential."""
    return f"storm-{n:05d}", f"credential-{n:05d}-{(n * 7919) % 100_003:06d}"


@asynccontextmanager
async def reference_server(
    workdir: Path, server_id: str, settings: Settings
) -> AsyncIterator[ReferenceServer]:
    """``python -m aoi server`` knowing the storm's clients, refusing past max_sessions."""
    clients = settings.clients
    retry = settings.server_retry_after_s
    lines = [
        "[server]", f'id = "{server_id}"', 'listen = "127.0.0.1:0"',
        f'db = "{workdir / (server_id + ".db")}"', "",
        "[overload]", f"max_sessions = {settings.max_sessions}",
        *([f"retry_after_s = {retry}"] if retry is not None else []), "",
        "[[server_apps]]", 'name = "storm"', f'key = "{SERVER_APP_KEY}"',
        f'app_ids = ["{APP_ID}"]', "",
    ]  # fmt: skip
    for n in range(clients):
        client_id, credential = identity(n)
        lines += ["[[clients]]", f'client_id = "{client_id}"', f'credential = "{credential}"']
    config = workdir / f"{server_id}.toml"
    config.write_text("\n".join(lines) + "\n")
    ready = workdir / f"{server_id}.ready"
    log = workdir / f"{server_id}.log"
    with log.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "aoi", "server", "--config", str(config),
             "--ready-file", str(ready), "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        with trio.fail_after(READY_WAIT_S):
            while not ready.exists():
                if process.returncode is not None:
                    raise RuntimeError(f"server {server_id} exited: {log.read_text()[-2000:]}")
                await trio.sleep(0.02)
        urls = json.loads(ready.read_text())
        yield ReferenceServer(server_id, process, urls["aoi2"], urls["http"], log)
    finally:
        if process.returncode is None:
            process.kill()
        with trio.move_on_after(5):
            await process.wait()


# --- the clients -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    """What the tap saw on one client's connection to one server."""

    at: float
    server: str
    kind: str  # hello (sent); welcome, reject, redirect (received)
    retry_after_s: float | None = None
    detail: str | None = None


_WATCHED = ("welcome", "reject", "redirect")


class _TappedWebSocket:
    """A WebSocket that tells its tap about hellos out and refusals in; nothing else changes."""

    def __init__(self, ws: WebSocket, tap: Tap, server: str) -> None:
        self._ws = ws
        self._tap = tap
        self._server = server

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)

    async def send(self, data: str) -> None:
        if '"hello"' in data and json.loads(data)["type"] == "hello":
            self._tap.seen.append(Seen(trio.current_time(), self._server, "hello"))
        await self._ws.send(data)

    async def receive(self) -> str | bytes:
        frame = await self._ws.receive()
        if isinstance(frame, str) and any(f'"{kind}"' in frame for kind in _WATCHED):
            message = json.loads(frame)
            kind = message.get("type") if isinstance(message, dict) else None
            if kind in _WATCHED:
                retry, detail = message.get("retry_after_s"), message.get("detail")
                seen = Seen(trio.current_time(), self._server, kind, retry, detail)
                self._tap.seen.append(seen)
        return frame


class Tap:
    """One client's connector: ``aoi.net.client.connect``, with the wire watched."""

    def __init__(self, servers: dict[str, str]) -> None:
        self.servers = servers  # url -> server id
        self.seen: list[Seen] = []

    async def connect(self, url: str, subprotocol: str) -> WebSocket:
        ws = await ws_connect(url, subprotocol)
        return cast(WebSocket, _TappedWebSocket(ws, self, self.servers.get(url, url)))

    def hellos(self) -> list[Seen]:
        return [seen for seen in self.seen if seen.kind == "hello"]

    def early_retries(self, client_id: str) -> list[dict[str, Any]]:
        """Hellos sent to a server before the end of the cool-down it gave this client: the
        hello is stamped before it is sent, the refusal once received, so this errs on the
        side of finding one."""
        not_before: dict[str, float] = {}
        early = []
        for seen in self.seen:
            if seen.kind == "hello":
                limit = not_before.get(seen.server, -math.inf)
                if seen.at < limit:
                    early.append({"server": seen.server, "client_id": client_id,
                                  "early_by_s": round(limit - seen.at, 6)})  # fmt: skip
            elif seen.kind in ("reject", "redirect") and seen.retry_after_s is not None:
                not_before[seen.server] = seen.at + float(seen.retry_after_s)
        return early


async def _no_fetch(url: str, headers: Any) -> Fetched:
    raise OSError("the storm's policies are files")


@contextmanager
def shared_codecs() -> Iterator[None]:
    """While active, ``Codec.from_contract`` builds each interface's codec once."""
    original = Codec.__dict__["from_contract"]
    build = original.__func__

    @functools.cache
    def cached(interface: str, options: tuple[tuple[str, Any], ...]) -> Codec:
        return cast(Codec, build(Codec, interface, **dict(options)))

    def from_contract(cls: type[Codec], /, interface: str, **options: Any) -> Codec:
        return cached(interface, tuple(sorted(options.items())))

    Codec.from_contract = classmethod(from_contract)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Codec.from_contract = original  # type: ignore[method-assign]


_ANSWERS = ("app_registered", "registration_changed", "connection_failed")


@dataclass
class Progress:
    expected: int
    answered: int = 0
    done: trio.Event = field(default_factory=trio.Event)


class StormApp:
    """One app on its client's AOI-1: registers, acks what it gets, notes every frame."""

    def __init__(self, client_id: str, ws: WebSocket) -> None:
        self.client_id = client_id
        self.ws = ws
        self.sent_at: float | None = None
        self.log: list[tuple[float, dict[str, Any]]] = []
        self.first: tuple[float, dict[str, Any]] | None = None  # the answer to app_register

    async def run(self, at: float, progress: Progress) -> None:
        await trio.sleep_until(at)
        self.sent_at = trio.current_time()
        await self.ws.send(json.dumps({"type": "app_register", "app_id": APP_ID}))
        with suppress(ConnectionClosed):
            while True:
                frame = await self.ws.receive()
                now = trio.current_time()
                message = json.loads(frame)
                self.log.append((now, message))
                kind = message.get("type")
                if kind == "app_notification":
                    await self.ws.send(json.dumps({"type": "app_ack", "id": message["id"]}))
                elif self.first is None and kind in _ANSWERS:
                    self.first = (now, message)
                    progress.answered += 1
                    if progress.answered == progress.expected:
                        progress.done.set()

    def final(self) -> dict[str, Any] | None:
        """The last word on where the app stands (registered, changed, failed)."""
        answers = [message for _, message in self.log if message.get("type") in _ANSWERS]
        return answers[-1] if answers else None

    def served_at(self) -> float | None:
        """When the app first heard it is served (app_registered or registration_changed)."""
        for at, message in self.log:
            if message.get("type") in ("app_registered", "registration_changed"):
                return at
        return None

    def notifications(self) -> list[dict[str, Any]]:
        return [message for _, message in self.log if message.get("type") == "app_notification"]


def policy_document(a: str, b: str, c: str, settings: Settings, returning: bool) -> dict[str, Any]:
    return {
        "provider": PROVIDER,
        "policy_version": 1,
        "servers": [
            {"id": "a", "url": a, "priority": 1},
            {"id": "b", "url": b, "priority": 2},
            {"id": "c", "url": c, "priority": 2},
        ],
        "selection": "priority_weighted",
        "reallocation": {
            "on_overload": "next_server", "on_unreachable": "next_server",
            "max_servers_tried": 3,
            "backoff": {"initial_ms": settings.initial_ms, "max_ms": settings.max_ms,
                        "multiplier": 2.0, "jitter": "full"},
            "return_to_preferred_after_s":
                settings.return_to_preferred_after_s if returning else 0,
        },
        "fallback": {"notify_app": True},
        "multi_server": {"allowed": True, "max_concurrent": 4},
        "keepalive_s": 270,
    }  # fmt: skip


def app_pair() -> tuple[WebSocket, WebSocket]:
    """Both ends of one AOI-1 WebSocket, in memory: (the app's, the client daemon's)."""
    a, b = trio.testing.memory_stream_pair()
    app = WebSocket(a, client=True, subprotocol="aoi-app.v1", remote="mem")
    peer = WebSocket(b, subprotocol="aoi-app.v1", remote="mem")
    return app, peer


# --- the run -----------------------------------------------------------------------------


@dataclass
class Storm:
    """Everything a run observed; :meth:`summary` makes the figures of it."""

    settings: Settings
    a: OverloadedServer
    servers: dict[str, str] = field(default_factory=dict)  # B, C: id -> AOI-3 base URL
    apps: list[StormApp] = field(default_factory=list)
    daemons: list[Daemon] = field(default_factory=list)
    taps: dict[str, Tap] = field(default_factory=dict)  # client_id -> its tap
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    pushed: dict[str, int] = field(default_factory=dict)  # client_id -> HTTP status
    setup_s: float = 0.0
    started_at: float = 0.0  # the first app_register
    answered_at: float | None = None  # the last app's first answer
    cpu_s: float = 0.0  # this process, from the first app_register to the last answer
    stop_s: float = 0.0  # the clients' orderly stop (bye)
    load_average: tuple[float, ...] = ()

    def outcome(self, app: StormApp) -> str:
        """``served:<server>`` (on B or C, an endpoint there), ``direct``, or what else."""
        final = app.final()
        if final is None:
            return "unanswered"
        if final["type"] == "connection_failed":
            return "direct" if final.get("fallback") == "direct" else f"failed:{final}"
        server = str(final.get("server_id"))
        endpoint = str(final.get("endpoint", ""))
        if server in self.servers and endpoint.startswith(self.servers[server] + "/v1/push/"):
            return f"served:{server}"
        return f"wrong:{final}"

    def reallocation_ms(self) -> list[float]:
        """Per served app: A's last reject before the app heard it is served, to that."""
        times = []
        for app in self.apps:
            served = app.served_at()
            if served is None:
                continue
            refusals = self.a.refusals.get(app.client_id, [])
            refused = [r.refused_at for r in refusals if r.refused_at < served]
            if refused:
                times.append((served - max(refused)) * 1000.0)
        return times

    def early_retries(self) -> list[dict[str, Any]]:
        early = self.a.early_retries()
        for client_id, tap in self.taps.items():
            early += tap.early_retries(client_id)
        return early

    def returns_held(self) -> int:
        """Returns to A that its cool-down held back: the client's return timer fired (1 s
        after it was served, or after its last refusal) before the cool-down A had given it
        ended. A client that ignored cool-downs would have been early each time."""
        timer = self.settings.return_to_preferred_after_s
        served = {app.client_id: app.served_at() for app in self.apps}
        held = 0
        for client_id, refusals in self.a.refusals.items():
            ordered = sorted(refusals, key=lambda r: r.hello_at)
            for n, refusal in enumerate(ordered[:-1]):
                if n == 0:
                    at = served.get(client_id)
                    fires = math.inf if at is None else at + timer
                else:
                    fires = refusal.refused_at + timer + 0.05  # the answer's way back: a bound
                held += fires < refusal.refused_at + refusal.retry_after_s
        return held

    def delivered(self) -> int:
        by_id = {app.client_id: app for app in self.apps}
        return sum(
            1
            for client_id, status in self.pushed.items()
            if status == 201 and by_id[client_id].notifications()
        )

    def summary(self) -> dict[str, Any]:
        s = self.settings
        outcomes = Counter(self.outcome(app) for app in self.apps)
        served = {k.split(":", 1)[1]: v for k, v in outcomes.items() if k.startswith("served:")}
        early = self.early_retries()
        answers = [a.first[0] - a.sent_at for a in self.apps if a.first and a.sent_at is not None]
        hellos: Counter[str] = Counter()
        refused: Counter[str] = Counter()
        why: Counter[str] = Counter()
        for tap in self.taps.values():
            hellos.update(seen.server for seen in tap.hellos())
            for seen in tap.seen:
                if seen.kind == "reject":
                    refused[seen.server] += 1
                    if seen.server != "a":
                        why[f"{seen.server}: {seen.detail}"] += 1
        a_hellos = sum(len(r) for r in self.a.refusals.values())
        return {
            "benchmark": "storm",
            "clients": s.clients,
            "setup": {
                "a": "recording server: reject{overloaded, retry_after_s uniform "
                f"{s.a_retry_after_s[0]}..{s.a_retry_after_s[1]} s, servers: [B, C]}} to all",
                "b_c": f"reference servers (own processes), max_sessions {s.max_sessions} each",
                "b_c_retry_after_s": s.server_retry_after_s or "default",
                "backoff_initial_ms": s.initial_ms,
                "returning_clients": s.returners,
                "return_to_preferred_after_s": s.return_to_preferred_after_s,
                "welcome_timeout_s": s.welcome_timeout_s,
                "spread_s": s.spread_s,
                "dwell_s": s.dwell_s,
                "cpus": len(os.sched_getaffinity(0)),
                "load_average_before": self.load_average,
            },
            "all_served_or_direct_s": (
                None if self.answered_at is None else round(self.answered_at - self.started_at, 3)
            ),
            "served": sum(served.values()),
            "served_on": dict(sorted(served.items())),
            "direct": outcomes.get("direct", 0),
            "other": {k: v for k, v in outcomes.items() if not k.startswith(("served:", "direct"))},
            "reallocation_ms": _percentiles(self.reallocation_ms()),
            "target_p99_ms": TARGET_P99_MS,
            "register_to_answer_ms": _percentiles([x * 1000.0 for x in answers]),
            "early_retries": len(early),
            "early_retry_examples": early[:5],
            "first_hello_to_a": sum(
                1 for tap in self.taps.values() if tap.hellos() and tap.hellos()[0].server == "a"
            ),
            "hellos_sent": dict(sorted(hellos.items())),
            "rejects_received": dict(sorted(refused.items())),
            "b_c_reject_details": dict(sorted(why.items())),
            "a_hellos": a_hellos,
            "a_returns": a_hellos - len(self.a.refusals),
            "a_returns_held_by_cooldown": self.returns_held(),
            "a_anomalies": self.a.anomalies[:5],
            "pushes": {"sent": len(self.pushed), "delivered": self.delivered()},
            "server_metrics": self.metrics,
            "client_process_cpu_s": round(self.cpu_s, 2),
            "setup_s": round(self.setup_s, 2),
            "stop_s": round(self.stop_s, 2),
        }


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)], 3)

    return {
        "n": len(ordered), "p50": at(50), "p90": at(90), "p99": at(99),
        "max": round(ordered[-1], 3), "mean": round(statistics.fmean(ordered), 3),
    }  # fmt: skip


async def _push(result: Storm, count: int) -> None:
    """AOI-3 pushes to ``count`` served apps, spread over B and C; the apps must get them."""
    served = [app for app in result.apps if result.outcome(app).startswith("served:")]
    sample = random.Random(result.settings.seed).sample(served, min(count, len(served)))
    headers = {"authorization": f"Bearer {SERVER_APP_KEY}"}
    async with httpx.AsyncClient(timeout=10) as client:
        for app in sample:
            final = app.final()
            assert final is not None
            body = {"payload": f"storm {app.client_id}", "ttl_s": 60}
            with suppress(httpx.HTTPError):
                response = await client.post(final["endpoint"], json=body, headers=headers)
                result.pushed[app.client_id] = response.status_code
    with trio.move_on_after(10):
        while result.delivered() < sum(1 for s in result.pushed.values() if s == 201):
            await trio.sleep(0.05)


async def storm(settings: Settings, workdir: Path, state_root: Path | None = None) -> Storm:
    """Run one storm in ``workdir`` (the clients' state directories under ``state_root``,
    default ``workdir``); returns what was observed (see :class:`Storm`)."""
    raise_nofile()
    began = trio.current_time()
    a = OverloadedServer("a", settings.a_retry_after_s, settings.seed)
    result = Storm(settings, a, load_average=tuple(round(x, 2) for x in os.getloadavg()))
    try:
        async with trio.open_nursery() as nursery:
            await a.serve(nursery)
            async with (
                reference_server(workdir, "b", settings) as b,
                reference_server(workdir, "c", settings) as c,
            ):
                a.alternates = [b.aoi2, c.aoi2]
                result.servers = {"b": b.http, "c": c.http}
                policies = {}
                for returning in (False, True):
                    path = policies[returning] = workdir / f"policy-returning-{returning}.json"
                    document = policy_document(a.url, b.aoi2, c.aoi2, settings, returning)
                    path.write_text(json.dumps(document))
                urls = {a.url: "a", b.aoi2: "b", c.aoi2: "c"}
                async with trio.open_nursery() as clients:
                    with shared_codecs():
                        await _start_clients(result, clients, policies, urls, state_root or workdir)
                    await trio.sleep(0.2)  # every daemon's start-up tasks have run
                    result.setup_s = trio.current_time() - began
                    gc.collect()
                    gc.disable()  # see the module's docstring
                    await _register_all(result, clients)
                    await _push(result, settings.pushes)
                    await trio.sleep(settings.dwell_s)  # the returning clients come back to A
                    for server in (b, c):
                        result.metrics[server.id] = await _metrics(server)
                    stop = trio.current_time()
                    async with trio.open_nursery() as stopping:  # bye, as clients do on exit
                        for daemon in result.daemons:
                            stopping.start_soon(daemon.stop, 5.0)
                    result.stop_s = trio.current_time() - stop
                    clients.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
    finally:
        gc.enable()
    return result


async def _start_clients(
    result: Storm,
    nursery: trio.Nursery,
    policies: dict[bool, Path],
    urls: dict[str, str],
    state_root: Path,
) -> None:
    """One daemon per client, each with one app connected to its AOI-1, not registered."""
    settings = result.settings
    for n in range(settings.clients):
        client_id, credential = identity(n)
        tap = result.taps[client_id] = Tap(urls)
        config = ClientConfig(
            client_id=client_id, credential=credential, app_port=None,
            state_dir=state_root / client_id,
            providers=(ProviderConfig(PROVIDER, policy_file=policies[n < settings.returners]),),
            welcome_timeout_s=settings.welcome_timeout_s,
        )  # fmt: skip
        rng = random.Random(settings.seed * 1_000_003 + n)
        daemon = Daemon(config, connect=tap.connect, fetch=_no_fetch, rng=rng)
        await nursery.start(daemon.run)
        result.daemons.append(daemon)
        assert daemon.apps is not None
        app_ws, peer = app_pair()
        nursery.start_soon(daemon.apps.serve_connection, peer)
        result.apps.append(StormApp(client_id, app_ws))


async def _register_all(result: Storm, nursery: trio.Nursery) -> None:
    """Every app registers (at once, or spread); until each has its answer, or time is up."""
    settings = result.settings
    progress = Progress(len(result.apps))
    cpu = time.process_time()
    result.started_at = start = trio.current_time()
    step = settings.spread_s / max(1, len(result.apps))
    for n, app in enumerate(result.apps):
        nursery.start_soon(app.run, start + n * step, progress)
    with trio.move_on_after(settings.timeout_s):
        await progress.done.wait()
    result.cpu_s = time.process_time() - cpu
    if progress.done.is_set():
        result.answered_at = max(app.first[0] for app in result.apps if app.first)


async def _metrics(server: ReferenceServer) -> dict[str, float]:
    wanted = ("sessions", "hello_accepted_total", "hello_rejected_total", "loop_lag_seconds")
    with suppress(httpx.HTTPError):
        figures = await server.metrics()
        return {name: figures[f"aoi_{name}"] for name in wanted if f"aoi_{name}" in figures}
    return {}


@contextmanager
def scratch() -> Iterator[tuple[Path, Path]]:
    """A work directory, and one for the clients' state: in memory (``/dev/shm``) if there
    is one, as a thousand devices would not share one disk."""
    shm = Path("/dev/shm")
    memory = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    with (
        tempfile.TemporaryDirectory(prefix="aoi-storm-") as work,
        tempfile.TemporaryDirectory(prefix="aoi-storm-state-", dir=memory) as state,
    ):
        yield Path(work), Path(state)


def run(clients: int = 1000, **options: Any) -> dict[str, Any]:
    """One storm of ``clients`` (``options``: fields of :class:`Settings`); its figures, and
    ``seconds``, the wall time of the whole run."""
    settings = replace(Settings(), clients=clients, **options)
    began = time.monotonic()
    with scratch() as (work, state):
        observed = trio.run(storm, settings, work, state)
    figures = observed.summary()
    figures["seconds"] = round(time.monotonic() - began, 1)
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--capacity", type=int, help="max_sessions of B and of C (ceil(clients/2))")
    p.add_argument("--spread-s", type=float, default=0.0, help="app_register over this window")
    p.add_argument("--dwell-s", type=float, default=4.0, help="run on after the last answer")
    p.add_argument("--returning", type=int, help="clients that come back to A (a tenth)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    logging.getLogger("aoi").setLevel(logging.ERROR)
    figures = run(
        args.clients, capacity=args.capacity, spread_s=args.spread_s, dwell_s=args.dwell_s,
        returning=args.returning, seed=args.seed,
    )  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
