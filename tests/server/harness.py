"""Real reference servers on loopback, and a small AOI-2 client to talk to them."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from aoi.net.client import connect
from aoi.net.websocket import ConnectionClosed, WebSocket
from aoi.server.app import Listening, Server
from aoi.server.clock import Clock
from aoi.server.config import ServerConfig, parse_config
from aoi.server.store import Store

APP = "com.example.chat"
OTHER_APP = "com.example.mail"
KEY = "chat-key-0123456789"
OTHER_KEY = "mail-key-0123456789"
TIMEOUT = 10


def config(tmp_path: Path, **sections: Any) -> ServerConfig:
    """The test server's configuration; a table given in ``sections`` is merged into its
    default, a list (``clients``) replaces it."""
    document: dict[str, Any] = {
        "server": {"id": "a", "listen": "127.0.0.1:0", "db": str(tmp_path / "a.db")},
        "clients": [{"client_id": f"dev-{n}", "credential": f"secret-{n}"} for n in range(1, 9)],
        "server_apps": [
            {"name": "chat", "key": KEY, "app_ids": [APP], "rate_per_s": 1000, "burst": 1000},
            {
                "name": "mail",
                "key": OTHER_KEY,
                "app_ids": [OTHER_APP],
                "rate_per_s": 1,
                "burst": 20,
            },
        ],
    }
    for name, values in sections.items():
        document[name] = (
            values if isinstance(values, list) else {**document.get(name, {}), **values}
        )
    return parse_config(document)


@dataclass
class Peer:
    """An AOI-2 client written against the wire only: frames are plain dicts."""

    ws: WebSocket

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def receive(self) -> dict[str, Any]:
        with trio.fail_after(TIMEOUT):
            frame = await self.ws.receive()
        decoded: dict[str, Any] = json.loads(frame)
        return decoded

    async def closed(self) -> ConnectionClosed:
        with trio.fail_after(TIMEOUT):
            while True:
                try:
                    await self.ws.receive()
                except ConnectionClosed as closed:
                    return closed

    async def register(self, app_id: str = APP, req: int = 1) -> dict[str, Any]:
        await self.send(type="register", req=req, app_id=app_id)
        return await self.receive()


@dataclass
class Env:
    """A running server, an HTTP client for AOI-3, and every AOI-2 peer opened on it."""

    server: Server
    here: Listening
    http: httpx.AsyncClient
    ssl_context: ssl.SSLContext | None = None
    peers: list[Peer] = field(default_factory=list)

    async def hello(
        self, client: int = 1, *, credential: str | None = None, session: str | None = None
    ) -> tuple[Peer, dict[str, Any]]:
        with trio.fail_after(TIMEOUT):
            ws = await connect(self.here.aoi2, "aoi.v1", ssl_context=self.ssl_context)
        peer = Peer(ws)
        self.peers.append(peer)
        frame: dict[str, Any] = {
            "type": "hello", "version": 1, "client_id": f"dev-{client}",
            "credential": credential or f"secret-{client}",
        }  # fmt: skip
        if session is not None:
            frame["session"] = session
        await peer.send(**frame)
        return peer, await peer.receive()

    async def offline(self, client: int = 1) -> tuple[str, str]:
        """A client that registered the chat app and left: its endpoint and session id."""
        peer, welcome = await self.hello(client)
        endpoint = (await peer.register())["endpoint"]
        await peer.send(type="bye")
        await peer.closed()
        return endpoint, welcome["session"]

    async def push(
        self, endpoint: str, payload: str = "hi", *, key: str = KEY, **body: Any
    ) -> httpx.Response:
        return await self.http.post(
            endpoint,
            json={"payload": payload, "ttl_s": 60, **body},
            headers={"authorization": f"Bearer {key}"},
        )

    async def report(self, location: str, key: str = KEY) -> dict[str, Any]:
        response = await self.http.get(
            self.here.http + location, headers={"authorization": f"Bearer {key}"}
        )
        document: dict[str, Any] = response.json()
        return document

    async def settled(self, location: str, status: str) -> dict[str, Any]:
        """The report once it says ``status``: final states reach the store in batches."""
        with trio.fail_after(TIMEOUT):
            while (report := await self.report(location))["status"] != status:
                await trio.sleep(0.01)
        return report


@asynccontextmanager
async def running(
    cfg: ServerConfig,
    ssl_context: ssl.SSLContext | None = None,
    store: Store | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[Env]:
    server = Server(cfg, store, clock)
    async with (
        trio.open_nursery() as nursery,
        httpx.AsyncClient(verify=ssl_context or True) as http,
    ):
        here: Listening = await nursery.start(server.run)
        env = Env(server, here, http, ssl_context)
        try:
            yield env
        finally:
            for peer in env.peers:
                await peer.ws.close()
            nursery.cancel_scope.cancel()
