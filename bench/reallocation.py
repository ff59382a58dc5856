"""Reallocation time of the reference AOI Client: from a server's refusal to the app's
``registration_changed``, on loopback, with the policy's waits at their minimum.

    python -m bench.reallocation [--runs 200] [--scenario reject|redirect]

Two small AOI-2 servers (the core's ServerSession behind the net layer's listener) and the
real client daemon, with an app on its AOI-1 port, all on 127.0.0.1. Each run, the server
holding the session refuses it and the client moves to the other one:

- ``reject``: the server drops the connection; the client resumes there at once (backoff
  bound 1 ms) and is refused with ``reject{overloaded}``; timed from sending the reject.
- ``redirect``: the server sheds the established session with ``redirect``; timed from
  sending the redirect.

Prints one JSON object: the percentiles of the times, in milliseconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from aoi.client.config import ClientConfig, ProviderConfig
from aoi.client.daemon import Daemon
from aoi.core.codec import Codec
from aoi.core.messages import Hello, Limits, Redirect, Register, Registered, Reject, Welcome
from aoi.core.server_session import ServerSession
from aoi.net.client import connect
from aoi.net.http import HttpServer, WebSocketRoute
from aoi.net.http_messages import Request, Response
from aoi.net.websocket import ConnectionClosed, WebSocket

APP = "com.example.bench"
RETRY_AFTER_S = 0.02  # the refusing server's cool-down: the next run waits it out
CODEC = Codec.from_contract("aoi2")


class BenchServer:
    def __init__(self, server_id: str) -> None:
        self.id = server_id
        self.url = ""
        self.refuse_next = False
        self.refused_at: float | None = None
        self.live: list[tuple[ServerSession, WebSocket]] = []
        self.sessions = 0

    async def serve(self, nursery: trio.Nursery) -> None:
        async def http(request: Request) -> Response:
            return Response.error(404, "not_found", "AOI-2 only")

        server = HttpServer(http, {"/aoi": WebSocketRoute("aoi.v1", self._connection)})
        listeners = await nursery.start(server.serve, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/aoi"

    async def redirect(self) -> None:
        for session, ws in list(self.live):
            self.refused_at = time.perf_counter()
            session.send(Redirect(reason="overloaded", retry_after_s=RETRY_AFTER_S), 0.0)
            await self._flush(session, ws)

    async def drop(self) -> None:
        for _, ws in list(self.live):
            await ws.close(1011, "gone")

    async def _connection(self, ws: WebSocket, request: Request) -> None:
        session = ServerSession(CODEC, trio.current_time())
        entry = (session, ws)
        try:
            while session.closed is None:
                frame = await ws.receive()
                for event in session.receive(frame, trio.current_time()):
                    if isinstance(event, Hello):
                        self._hello(session, entry)
                    elif isinstance(event, Register):
                        token = hashlib.sha256(f"{self.id}{id(session)}".encode()).hexdigest()
                        session.send(Registered(req=event.req, app_id=event.app_id, token=token,
                                                endpoint=f"http://bench/{token}"), 0.0)  # fmt: skip
                await self._flush(session, ws)
        except ConnectionClosed:
            pass
        finally:
            if entry in self.live:
                self.live.remove(entry)

    def _hello(self, session: ServerSession, entry: tuple[ServerSession, WebSocket]) -> None:
        if self.refuse_next:
            self.refuse_next = False
            self.refused_at = time.perf_counter()
            session.send(Reject(reason="overloaded", retry_after_s=RETRY_AFTER_S), 0.0)
            return
        self.sessions += 1
        session.send(Welcome(server_id=self.id, session=f"{self.id}-bench-{self.sessions:08d}",
                             keepalive_s=270, limits=Limits(4096, 32)), 0.0)  # fmt: skip
        self.live.append(entry)

    async def _flush(self, session: ServerSession, ws: WebSocket) -> None:
        for frame in session.outgoing():
            await ws.send(frame)
        if session.closed is not None:
            await ws.close(session.closed.code)


def policy(servers: list[BenchServer]) -> dict[str, Any]:
    return {
        "provider": "bench.example",
        "policy_version": 1,
        "servers": [{"id": s.id, "url": s.url, "priority": 1} for s in servers],
        "selection": "ordered",
        "reallocation": {
            "on_overload": "next_server", "on_unreachable": "next_server",
            "max_servers_tried": 3, "return_to_preferred_after_s": 0,
            "backoff": {"initial_ms": 1, "max_ms": 1, "multiplier": 1.0, "jitter": "full"},
        },
        "fallback": {"notify_app": True},
        "multi_server": {"allowed": True, "max_concurrent": 4},
        "keepalive_s": 270,
    }  # fmt: skip


async def measure(runs: int, scenario: str) -> list[float]:
    servers = [BenchServer("a"), BenchServer("b")]
    times: list[float] = []
    async with trio.open_nursery() as nursery:
        for server in servers:
            await server.serve(nursery)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "policy.json"
            path.write_text(json.dumps(policy(servers)))
            config = ClientConfig(
                client_id="bench", credential="bench", app_port=0, seed=1,
                providers=(ProviderConfig("bench.example", policy_file=path),),
            )  # fmt: skip
            daemon: Daemon = await nursery.start(Daemon(config).run)
            assert daemon.app_url is not None
            app = await connect(daemon.app_url, "aoi-app.v1")
            await app.send(json.dumps({"type": "app_register", "app_id": APP}))
            current = json.loads(await app.receive())["server_id"]
            for _ in range(runs):
                victim = next(s for s in servers if s.id == current)
                await trio.sleep(RETRY_AFTER_S * 2)  # the last refusal's cool-down is over
                if scenario == "reject":
                    victim.refuse_next = True
                    await victim.drop()
                else:
                    await victim.redirect()
                with trio.fail_after(10):
                    while True:
                        message = json.loads(await app.receive())
                        if message["type"] == "registration_changed":
                            break
                arrived = time.perf_counter()
                assert message["server_id"] != current and victim.refused_at is not None
                times.append((arrived - victim.refused_at) * 1000.0)
                current = message["server_id"]
            await app.close()
            await daemon.stop()
        nursery.cancel_scope.cancel()
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--scenario", choices=["reject", "redirect"], default="reject")
    args = p.parse_args()
    logging.getLogger("aoi").setLevel(logging.ERROR)
    times = trio.run(measure, args.runs, args.scenario)
    result = {
        "benchmark": "reallocation", "scenario": args.scenario, "runs": len(times),
        "unit": "ms", "p50": round(percentile(times, 50), 3),
        "p90": round(percentile(times, 90), 3), "p99": round(percentile(times, 99), 3),
        "max": round(max(times), 3), "mean": round(statistics.fmean(times), 3),
        "target_p99": 50.0,
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
