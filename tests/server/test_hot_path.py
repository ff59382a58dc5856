"""The server's hot path: what its shortcuts must keep exactly as the plain ways did.

Fast socket I/O beside trio's streams, a writer woken without events, notifies sent from the
pushing task, a reader timeout shared by many frames, idle HTTP connections reaped by one
task, headers decoded on demand, batched status writes, and the small formatters.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import trio
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import TextMessage

from aoi.core import codec as codec_module
from aoi.core.codec import Codec
from aoi.core.messages import (
    Ack,
    AppNotification,
    AppRegistered,
    Bye,
    ConnectionFailed,
    Error,
    Hello,
    Limits,
    Notify,
    Ping,
    Redirect,
    Reject,
    Welcome,
)
from aoi.core.rfc3339 import rfc3339
from aoi.core.server_session import ServerSession
from aoi.net import fastio
from aoi.net.client import connect
from aoi.net.http import HttpServer
from aoi.net.http_messages import Headers, Request, Response
from aoi.net.websocket import WebSocket
from aoi.server.app import Server
from aoi.server.link import Link
from aoi.server.push_api import NotificationIds
from aoi.server.store import SqliteStore

from .harness import APP, KEY, config, running


def socket_pair(buffer: int | None = None) -> tuple[trio.SocketStream, socket.socket]:
    """A trio stream and the plain socket at its other end (small buffers if asked)."""
    a, b = socket.socketpair()
    if buffer is not None:
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    b.setblocking(False)
    return trio.SocketStream(trio.socket.from_stdlib_socket(a)), b


def drain(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


# --- fastio ------------------------------------------------------------------------------


def test_fast_send_and_receive_keep_every_byte_in_order() -> None:
    async def main() -> None:
        stream, peer = socket_pair(buffer=4096)
        sent = bytearray()
        received = bytearray()
        for n in range(300):  # far more than the buffers hold: the waiting path too
            data = bytes([n % 256]) * 997
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fastio.send_all, stream, data)
                await trio.sleep(0)
                while len(received) < len(sent) + len(data):
                    received += drain(peer)
                    await trio.sleep(0.001)
            sent += data
        assert received == sent
        peer.sendall(b"abc")
        assert await fastio.receive_some(stream, 100) == b"abc"
        async with trio.open_nursery() as nursery:  # nothing there yet: waits, then reads

            async def later() -> None:
                await trio.sleep(0.05)
                peer.sendall(b"late")

            nursery.start_soon(later)
            assert await fastio.receive_some(stream, 100, expect_wait=True) == b"late"
        peer.close()
        assert await fastio.receive_some(stream, 100) == b""
        await stream.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await fastio.send_all(stream, b"x")
        with pytest.raises(trio.ClosedResourceError):
            await fastio.receive_some(stream, 100)

    trio.run(main)


def test_fast_reads_yield_to_other_tasks_now_and_then() -> None:
    async def main() -> None:
        stream, peer = socket_pair()
        peer.sendall(b"x" * (fastio.FAIR_READS * 4))
        others_ran = 0

        async def other() -> None:
            nonlocal others_ran
            while True:
                others_ran += 1
                await trio.sleep(0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)
            await trio.sleep(0)
            before = others_ran
            for _ in range(fastio.FAIR_READS * 2):
                assert await fastio.receive_some(stream, 1) == b"x"  # always there at once
            assert others_ran > before
            nursery.cancel_scope.cancel()
        peer.close()
        await stream.aclose()

    trio.run(main)


def test_a_fast_read_is_never_lost_to_a_cancelled_scope() -> None:
    async def main() -> None:
        stream, peer = socket_pair()
        peer.sendall(b"x" * (fastio.FAIR_READS * 2))
        got = b""
        with trio.CancelScope() as scope:
            scope.cancel()
            for _ in range(fastio.FAIR_READS * 2):  # the forced yields are shielded
                got += await fastio.receive_some(stream, 1)
        assert got == b"x" * (fastio.FAIR_READS * 2)
        peer.close()
        await stream.aclose()

    trio.run(main)


# --- WebSocket: send_now and its backlog ---------------------------------------------------


def test_send_now_keeps_the_order_of_frames_when_the_socket_is_full() -> None:
    async def main() -> None:
        stream, peer = socket_pair(buffer=4096)
        ws = WebSocket(stream, subprotocol="x", remote="t")
        reader = Connection(ConnectionType.CLIENT)
        texts = [f"{n:05d}" + "y" * 500 for n in range(200)]
        left_over = False
        n = 0
        while n < len(texts) and not left_over:  # the pushing task's way, until it is full
            assert ws.can_send_now()
            left_over = ws.send_now([texts[n]])
            n += 1
        assert left_over and not ws.can_send_now()  # a backlog: the writer's turn now
        async with trio.open_nursery() as nursery:  # the writer's way, for the rest
            nursery.start_soon(ws.send_many, texts[n:])
            got: list[str] = []
            part = ""
            with trio.fail_after(10):
                while len(got) < len(texts):
                    data = drain(peer)
                    if data:
                        reader.receive_data(data)
                        for event in reader.events():
                            assert isinstance(event, TextMessage)
                            part += event.data
                            if event.message_finished:
                                got.append(part)
                                part = ""
                    await trio.sleep(0.001)
        assert got == texts
        assert ws.can_send_now()
        peer.close()
        await stream.aclose()

    trio.run(main)


def test_send_now_never_raises_for_a_broken_connection() -> None:
    async def main() -> None:
        stream, peer = socket_pair()
        ws = WebSocket(stream, subprotocol="x", remote="t")
        peer.close()
        results = {ws.send_now(["a" * 1000]) for _ in range(50)}
        assert True in results  # the writer is told to find out
        await stream.aclose()

    trio.run(main)


# --- Link: waking the writer -------------------------------------------------------------


def test_link_flush_wakes_the_writer_once_and_is_not_lost() -> None:
    async def main() -> None:
        link = Link(ServerSession(Codec.from_contract("aoi2"), 0.0), client_id="c")
        link.flush()
        link.flush()
        with trio.fail_after(1):
            await link.wait_flush()  # flushed before the wait: returns at once
        woken = 0

        async def writer() -> None:
            nonlocal woken
            while True:
                await link.wait_flush()
                woken += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.sleep(0.01)
            assert link.writer_parked and woken == 0
            link.flush()
            link.flush()  # the same wake
            await trio.sleep(0.01)
            assert woken == 1 and link.writer_parked
            nursery.cancel_scope.cancel()
        assert not link.writer_parked  # a cancelled wait leaves nothing behind
        link.flush()
        with trio.fail_after(1):
            await link.wait_flush()

    trio.run(main)


# --- AOI-2 through a real server ---------------------------------------------------------


def test_many_pushes_to_a_client_that_reads_late_arrive_complete_and_in_order(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            peer, _ = await env.hello()
            endpoint = (await peer.register())["endpoint"]
            payload = "p" * 3000
            ids = []
            for n in range(40):  # not read meanwhile: frames pile up in the socket
                response = await env.push(endpoint, f"{n:03d}{payload}")
                assert response.status_code == 201
                ids.append(response.json()["id"])
            seen = []
            while len(seen) < len(ids):
                frame = await peer.receive()
                assert frame["type"] == "notify"
                seen.append(frame["id"])
            assert seen == ids
            await peer.send(type="ack", ids=seen)
            for n in (0, len(ids) - 1):
                await env.settled(f"/v1/messages/{ids[n]}", "delivered")

    trio.run(main)


def test_acks_keep_a_session_open_and_silence_closes_it_on_time(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            endpoint = env.server.aoi2
            endpoint.settings = dataclasses.replace(endpoint.settings, keepalive_s=0.2)  # type: ignore[arg-type]
            peer, welcome = await env.hello()
            assert welcome["keepalive_s"] == 0.2
            await peer.register()
            # Acks only (no other frame): the reader's one timeout serves them all and must
            # neither close the session while they come nor cut one short.
            started = trio.current_time()
            while trio.current_time() - started < 1.5:
                await peer.send(type="ack", ids=["AAAAAAAAAAAAAAAA"])
                await trio.sleep(0.1)
            pushed = await env.push((await peer.register())["endpoint"], "still there")
            assert pushed.status_code == 201
            assert (await peer.receive())["id"] == pushed.json()["id"]
            silent_since = trio.current_time()
            closed = await peer.closed()
            assert closed.code == 4408
            assert trio.current_time() - silent_since < 2.0  # on time, not a stale timeout

    trio.run(main)


class CountingStore(SqliteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.status_writes = 0

    async def set_status(self, ids: Any, status: str, at: float) -> None:
        self.status_writes += 1
        await super().set_status(ids, status, at)


def test_acks_reach_the_store_in_few_writes_and_never_before_the_ack(tmp_path: Path) -> None:
    async def main() -> None:
        store = CountingStore(tmp_path / "counted.db")
        server = Server(config(tmp_path), store=store)
        headers = {"authorization": f"Bearer {KEY}"}
        async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
            here = await nursery.start(server.run)
            ws = await connect(here.aoi2, "aoi.v1")
            hello = {"type": "hello", "version": 1, "client_id": "dev-1", "credential": "secret-1"}
            await ws.send(json.dumps(hello))
            assert json.loads(await ws.receive())["type"] == "welcome"
            await ws.send(json.dumps({"type": "register", "req": 1, "app_id": APP}))
            endpoint = json.loads(await ws.receive())["endpoint"]
            ids = []
            for n in range(20):
                body = {"payload": f"n{n}", "ttl_s": 60}
                ids.append((await http.post(endpoint, json=body, headers=headers)).json()["id"])
            for _ in ids:
                assert json.loads(await ws.receive())["type"] == "notify"
            acked_at = time.time()
            for i in ids:  # one ack frame each, in a burst
                await ws.send(json.dumps({"type": "ack", "ids": [i]}))
            with trio.fail_after(10):
                while True:
                    reports = [
                        (await http.get(f"{here.http}/v1/messages/{i}", headers=headers)).json()
                        for i in ids
                    ]
                    if all(r["status"] == "delivered" for r in reports):
                        break
                    await trio.sleep(0.02)
            assert store.status_writes < len(ids)
            for report in reports:
                delivered = datetime.fromisoformat(report["delivered_at"].replace("Z", "+00:00"))
                assert delivered.timestamp() >= math.floor(acked_at * 1000) / 1000
            await ws.close()
            nursery.cancel_scope.cancel()

    trio.run(main)


# --- HTTP ----------------------------------------------------------------------------------


def test_idle_keep_alive_connections_are_closed_and_busy_ones_are_not() -> None:
    async def handler(request: Request) -> Response:
        return Response.json(200, {"auth": request.headers.get("authorization")})

    async def main() -> None:
        server = HttpServer(handler, {}, idle_timeout_s=0.3)
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(server.serve, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            conn = h11.Connection(h11.CLIENT)
            for n in range(6):  # busy for longer than the timeout, a request at a time
                if n:
                    await trio.sleep(0.1)
                request = h11.Request(
                    method="GET", target="/x",
                    headers=[("host", "t"), ("authorization", f"k{n}")],
                )  # fmt: skip
                await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
                events: list[Any] = []
                while not any(isinstance(e, h11.EndOfMessage) for e in events):
                    conn.receive_data(await stream.receive_some(4096))
                    while (event := conn.next_event()) is not h11.NEED_DATA:
                        events.append(event)
                body = b"".join(e.data for e in events if isinstance(e, h11.Data))
                assert json.loads(body) == {"auth": f"k{n}"}
                conn.start_next_cycle()
            idle_since = trio.current_time()
            with trio.fail_after(2):
                assert await stream.receive_some(4096) == b""  # closed by the server
            assert trio.current_time() - idle_since >= 0.25
            await stream.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_headers_decode_on_demand_and_the_last_of_a_repeated_one_wins() -> None:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(
        b"POST /p HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k\r\nX-Dup: 1\r\n"
        b"x-dup: 2\r\nContent-Length: 0\r\n\r\n"
    )
    request = conn.next_event()
    assert isinstance(request, h11.Request)
    lazy = Headers(request.headers)
    assert lazy.get("authorization") == "Bearer k"
    assert lazy.get("x-dup") == "2" and lazy.get("missing") is None
    assert lazy.get("missing", "d") == "d"
    plain = {k.decode(): v.decode() for k, v in request.headers}
    assert dict(lazy) == plain and len(lazy) == len(plain) and "host" in lazy
    assert lazy["x-dup"] == "2" and lazy.get("x-dup") == "2"


# --- formatters ----------------------------------------------------------------------------


def test_rfc3339_is_the_datetime_formula_exactly() -> None:
    def reference(epoch: float) -> str:
        text = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")

    rng = random.Random(7)
    now = time.time()
    samples = [0.0, 0.0004999, 0.0005, 0.9994999, 0.9999995, 1e9 + 0.9999996, now]
    samples += [math.floor(now) + 0.9999995 + rng.uniform(-1e-6, 1e-6) for _ in range(2000)]
    samples += [rng.uniform(0, 2.5e11) for _ in range(5000)]
    samples += [now + rng.uniform(0, 3) for _ in range(5000)]
    for epoch in samples:
        assert rfc3339(epoch) == reference(epoch), epoch


def test_notification_ids_look_like_token_urlsafe_12_and_do_not_repeat() -> None:
    new_id = NotificationIds()
    ids = [new_id() for _ in range(3 * NotificationIds.BLOCK + 5)]
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert all(len(i) == 16 and set(i) <= alphabet for i in ids)
    assert len(set(ids)) == len(ids)


MESSAGES = [
    Hello(version=1, client_id="c", credential="s", provider=None, session="x"),
    Welcome(
        server_id="a",
        session="s",
        keepalive_s=30,
        limits=Limits(max_payload=1, max_apps=2),
        resumed=False,
    ),
    Reject(reason="overloaded", retry_after_s=1.5, servers=("wss://b/aoi",), detail="é ☃"),
    Notify(
        id="i",
        token="t",
        app_id="a",
        payload='q"\\\n\u2028\U0001f600',
        priority="high",
        ttl_s=5,
        created_at="2026-01-01T00:00:00.000Z",
        collapse_key="k",
    ),
    Ack(ids=("a", "b")),
    Ping(ts=1.25),
    Ping(),
    Bye(),
    Error(code="x", detail="y", fatal=True, req=3),
    Redirect(reason="maintenance", servers=None, retry_after_s=2.0),
    AppRegistered(app_id="a", token="t", endpoint="http://e", server_id="s"),
    AppNotification(id="i", payload="p", priority="low", created_at="c"),
    ConnectionFailed(app_id="a", reason="overloaded", retry_after_s=3.0),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.type)
def test_codec_encodes_as_the_messages_say_on_the_wire(message: Any) -> None:
    assert codec_module.to_wire(message) == message.to_wire()
    expected = json.dumps(message.to_wire(), separators=(",", ":"), ensure_ascii=False)
    assert codec_module._encode(message.to_wire()) == expected
