"""In-memory AOI Servers and apps for driving the AOI Client in virtual time.

Everything talks real WebSocket frames over ``trio.testing.memory_stream_pair``, so a test
runs under ``MockClock(autojump_threshold=0)`` with no socket: an hour of backoff takes
milliseconds and every timer can be checked to the millisecond.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio.testing

from aoi.client.config import ClientConfig, ProviderConfig
from aoi.client.daemon import Daemon
from aoi.core.codec import Codec
from aoi.core.messages import (
    Bye,
    Hello,
    Limits,
    Message,
    Notify,
    Redirect,
    Register,
    Registered,
    Reject,
    Unregister,
    Unregistered,
    Welcome,
)
from aoi.core.server_session import ServerSession
from aoi.core.session import Closed
from aoi.net.websocket import ConnectionClosed, WebSocket

AOI2 = Codec.from_contract("aoi2")
PROVIDER = "op.example"
WALL = 1_800_000_000.0  # 2027-01-15: the wall clock the tests' policies are judged by
TIMEOUT = 3600.0  # virtual seconds: a test that waits this long has failed


def ws_pair(subprotocol: str) -> tuple[WebSocket, WebSocket]:
    """Two ends of one WebSocket (client, server), in memory."""
    a, b = trio.testing.memory_stream_pair()
    client = WebSocket(a, client=True, subprotocol=subprotocol, remote="mem")
    server = WebSocket(b, subprotocol=subprotocol, remote="mem")
    return client, server


def token_of(server_id: str, session: str, app_id: str) -> str:
    return hashlib.sha256(f"{server_id}|{session}|{app_id}".encode()).hexdigest()[:32]


@dataclass
class FakeSession:
    """What a fake server keeps of one client session (survives disconnects)."""

    id: str
    tokens: dict[str, str] = field(default_factory=dict)  # app_id -> token


class FakeConnection:
    def __init__(self, server: FakeServer, ws: WebSocket) -> None:
        self.server = server
        self.ws = ws
        self.session = ServerSession(AOI2, trio.current_time())
        self.state: FakeSession | None = None

    async def send(self, message: Message) -> None:
        self.session.send(message, trio.current_time())
        await self.flush()

    async def flush(self) -> None:
        frames = self.session.outgoing()
        if self.server.mute:  # a half-open connection: nothing reaches the client
            return
        for frame in frames:
            await self.ws.send(frame)
        if self.session.closed is not None and self.ws.closed is None:
            await self.ws.close(self.session.closed.code, self.session.closed.reason)

    async def serve(self) -> None:
        try:
            while self.session.closed is None:
                deadline = self.session.deadline()
                frame = None
                with trio.move_on_at(deadline if deadline is not None else float("inf")):
                    frame = await self.ws.receive()
                now = trio.current_time()
                events = (
                    self.session.tick(now) if frame is None else self.session.receive(frame, now)
                )
                for event in events:
                    if not isinstance(event, Closed):
                        self.server.received.append((now, event))
                        await self.on(event)
                await self.flush()
        except ConnectionClosed:
            pass
        finally:
            if self in self.server.live:
                self.server.live.remove(self)
            with trio.CancelScope(shield=True):
                await self.ws.close()

    async def on(self, message: Message) -> None:
        server = self.server
        now = trio.current_time()
        if isinstance(message, Hello):
            server.hellos.append((now, message))
            if server.reject is not None:
                reason, retry = server.reject
                await self.send(Reject(reason=reason, retry_after_s=retry))
                return
            if server.silent:
                return
            resumed = message.session in server.sessions
            if resumed:
                assert message.session is not None
                self.state = server.sessions[message.session]
            else:
                server.counter += 1
                self.state = FakeSession(f"{server.id}-session-{server.counter:06d}")
                server.sessions[self.state.id] = self.state
            for other in list(server.live):  # one connection per session
                if other.state is self.state:
                    await other.ws.close(4409, "resumed elsewhere")
            server.live.append(self)
            welcome = Welcome(server_id=server.welcome_id, session=self.state.id,
                              keepalive_s=server.keepalive_s, limits=Limits(4096, 32),
                              resumed=resumed)  # fmt: skip
            await self.send(welcome)
        elif isinstance(message, Register):
            assert self.state is not None
            token = self.state.tokens.setdefault(
                message.app_id, token_of(server.id, self.state.id, message.app_id)
            )
            endpoint = f"https://{server.id}.test/v1/push/{token}"
            self.session.send(Registered(req=message.req, app_id=message.app_id, token=token,
                                         endpoint=endpoint), now)  # fmt: skip
            for notification_id in server.queued.pop(message.app_id, ()):  # right behind it
                self.session.send(
                    server.notify_message(token, message.app_id, notification_id), now
                )
            await self.flush()
        elif isinstance(message, Unregister):
            assert self.state is not None
            for app_id, token in list(self.state.tokens.items()):
                if token == message.token:
                    del self.state.tokens[app_id]
            await self.send(Unregistered(req=message.req, token=message.token))


class FakeServer:
    def __init__(self, server_id: str, priority: int = 1) -> None:
        self.id = server_id
        self.welcome_id = server_id  # the server_id its welcome gives
        self.priority = priority
        self.url = f"ws://{server_id}.test/aoi"
        self.reject: tuple[str, float | None] | None = None
        self.unreachable = False
        self.silent = False  # accept the connection, never answer hello
        self.mute = False  # established sessions go quiet (nothing sent, not even pong)
        self.keepalive_s = 270
        self.hellos: list[tuple[float, Hello]] = []
        self.received: list[tuple[float, Message]] = []
        self.connects: list[float] = []
        self.sessions: dict[str, FakeSession] = {}
        self.live: list[FakeConnection] = []
        self.counter = 0
        self.queued: dict[str, list[str]] = {}  # app_id -> ids sent right after `registered`

    def entry(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "priority": self.priority}

    def received_of(self, kind: type[Message]) -> list[tuple[float, Any]]:
        return [(t, m) for t, m in self.received if isinstance(m, kind)]

    def token(self, app_id: str) -> str | None:
        for conn in self.live:
            if conn.state is not None and app_id in conn.state.tokens:
                return conn.state.tokens[app_id]
        return None

    def notify_message(
        self, token: str, app_id: str, notification_id: str, payload: str = "hi"
    ) -> Notify:
        return Notify(id=notification_id, token=token, app_id=app_id, payload=payload,
                      priority="normal", ttl_s=600, created_at="2027-01-15T08:00:00Z")  # fmt: skip

    async def notify(self, app_id: str, notification_id: str, payload: str = "hi") -> None:
        for conn in self.live:
            if conn.state is not None and app_id in conn.state.tokens:
                token = conn.state.tokens[app_id]
                await conn.send(self.notify_message(token, app_id, notification_id, payload))
                return
        raise AssertionError(f"{self.id}: no live session holds {app_id}")

    async def redirect(self, retry_after_s: float | None = None) -> None:
        for conn in list(self.live):
            await conn.send(Redirect(reason="overloaded", retry_after_s=retry_after_s))

    async def bye(self) -> None:
        for conn in list(self.live):
            await conn.send(Bye(reason="shutting down"))

    async def drop(self) -> None:
        """Lose every connection without a word (a crash, a network failure)."""
        for conn in list(self.live):
            self.live.remove(conn)
            await conn.ws._stream.aclose()


class FakeNetwork:
    """The daemon's ``connect``: URLs of fake servers to in-memory connections."""

    def __init__(self, nursery: trio.Nursery, *servers: FakeServer) -> None:
        self.nursery = nursery
        self.servers = {s.url: s for s in servers}

    async def connect(self, url: str, subprotocol: str) -> WebSocket:
        server = self.servers[url]
        server.connects.append(trio.current_time())
        if server.unreachable:
            raise OSError(f"{url}: connection refused")
        client, peer = ws_pair(subprotocol)
        self.nursery.start_soon(FakeConnection(server, peer).serve)
        return client


class FakeApp:
    """An app on AOI-1: frames are plain dicts, each stamped with its arrival time."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.log: list[tuple[float, dict[str, Any]]] = []

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def receive(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        with trio.fail_after(timeout):
            frame = await self.ws.receive()
        message: dict[str, Any] = json.loads(frame)
        self.log.append((trio.current_time(), message))
        return message

    async def expect(self, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        message = await self.receive(timeout)
        assert message["type"] == kind, message
        return message

    async def register(self, app_id: str, **extra: Any) -> dict[str, Any]:
        await self.send(type="app_register", app_id=app_id, **extra)
        return await self.receive()

    async def collect(self, seconds: float) -> list[dict[str, Any]]:
        """Everything that arrives within ``seconds``."""
        got = []
        with trio.move_on_after(seconds):
            while True:
                got.append(await self.receive())
        return got

    async def quiet(self, seconds: float) -> None:
        """Nothing arrives for ``seconds``."""
        with trio.move_on_after(seconds):
            message = await self.receive()
            raise AssertionError(f"unexpected {message}")


def policy(*servers: FakeServer, **overrides: Any) -> dict[str, Any]:
    """A policy naming ``servers``: ordered, fast backoff, return after 600 s."""
    document: dict[str, Any] = {
        "provider": PROVIDER,
        "policy_version": 1,
        "servers": [s.entry() for s in servers],
        "selection": "ordered",
        "reallocation": {
            "on_overload": "next_server",
            "on_unreachable": "next_server",
            "max_servers_tried": 3,
            "backoff": {"initial_ms": 500, "max_ms": 60000, "multiplier": 2.0, "jitter": "full"},
            "return_to_preferred_after_s": 600,
        },
        "fallback": {"notify_app": True},
        "multi_server": {"allowed": True, "max_concurrent": 4},
        "keepalive_s": 270,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    return document


@dataclass
class Harness:
    daemon: Daemon
    network: FakeNetwork
    nursery: trio.Nursery

    async def app(self) -> FakeApp:
        client, peer = ws_pair("aoi-app.v1")
        assert self.daemon.apps is not None
        self.nursery.start_soon(self.daemon.apps.serve_connection, peer)
        return FakeApp(client)


@asynccontextmanager
async def running(
    tmp_path: Path,
    documents: list[dict[str, Any]],
    *servers: FakeServer,
    seed: int = 1,
    state_dir: Path | None = None,
    providers: list[ProviderConfig] | None = None,
    fetch: Any = None,
) -> AsyncIterator[Harness]:
    """A daemon on the fake ``servers``, one provider per policy document (a file each),
    or the given ``providers`` (with ``fetch`` for their provisioning)."""
    if providers is None:
        providers = []
        for n, document in enumerate(documents):
            path = tmp_path / f"policy-{n}.json"
            path.write_text(json.dumps(document))
            providers.append(ProviderConfig(name=document["provider"], policy_file=path))
    config = ClientConfig(
        client_id="dev-1", credential="secret-1", providers=tuple(providers), app_port=None,
        state_dir=state_dir,
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        network = FakeNetwork(nursery, *servers)
        daemon = Daemon(config, connect=network.connect, fetch=fetch or _no_fetch,
                        rng=random.Random(seed), wall=lambda: WALL)  # fmt: skip
        await nursery.start(daemon.run)
        yield Harness(daemon, network, nursery)
        nursery.cancel_scope.cancel()


async def _no_fetch(url: str, headers: Any) -> Any:
    raise OSError("no network in these tests")


def run(test: Any) -> None:
    """Run an async test in virtual time."""
    trio.run(test, clock=trio.testing.MockClock(autojump_threshold=0))


async def serve_on_loopback(server: FakeServer, nursery: trio.Nursery) -> None:
    """Serve ``server`` on a real socket on 127.0.0.1 (and point its URL there)."""
    from aoi.net.http import HttpServer, WebSocketRoute
    from aoi.net.http_messages import Request, Response

    async def aoi2(ws: WebSocket, request: Request) -> None:
        await FakeConnection(server, ws).serve()

    async def http(request: Request) -> Response:
        return Response.error(404, "not_found", "AOI-2 only")

    listeners = await nursery.start(
        HttpServer(http, {"/aoi": WebSocketRoute("aoi.v1", aoi2)}).serve, "127.0.0.1", 0
    )
    server.url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/aoi"
