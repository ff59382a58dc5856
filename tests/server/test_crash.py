"""Crash safety: every push answered 201 survives ``kill -9`` of the server mid-burst.

The server runs as a real process (``python -m aoi server``), so the kill is a real one: no
shutdown path, no final commit, just the SQLite file as the last group commit left it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import h11
import pytest
import trio

from aoi.net.client import connect

from .harness import APP, KEY, Peer

PUSHERS = 8
PUSH_FOR_S = 0.7
QUIET_S = 0.5  # nothing more for this long after the last expected id: the queue is drained
DEADLINE_S = 15

CONFIG = f"""
[server]
id = "a"
listen = "127.0.0.1:0"
db = "crash.db"

[[clients]]
client_id = "dev-1"
credential = "secret-1"

[[server_apps]]
name = "chat"
key = "{KEY}"
app_ids = ["{APP}"]
rate_per_s = 1000000
burst = 1000000
"""


@contextmanager
def server_process(
    tmp_path: Path, run: str, store: str | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``aoi server`` on the configuration in ``tmp_path`` (its store on the Redis at
    ``store`` if given); yields it and its ready file."""
    config = tmp_path / "server.toml"
    config.write_text(
        CONFIG if store is None else CONFIG.replace("[server]\n", f'[server]\nstore = "{store}"\n')
    )
    ready = tmp_path / f"ready-{run}.json"
    with (tmp_path / f"server-{run}.log").open("wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "aoi", "server", "--config", str(config)),
                *("--ready-file", str(ready), "--log-level", "warning"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, ready
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)


async def urls(process: subprocess.Popen[bytes], ready: Path) -> dict[str, str]:
    while not ready.exists():
        assert process.poll() is None, "the server exited before it was ready"
        await trio.sleep(0.02)
    found: dict[str, str] = json.loads(ready.read_text())
    return found


async def hello(aoi2: str, session: str | None = None) -> tuple[Peer, dict[str, object]]:
    peer = Peer(await connect(aoi2, "aoi.v1"))
    frame = {"type": "hello", "version": 1, "client_id": "dev-1", "credential": "secret-1"}
    if session is not None:
        frame["session"] = session
    await peer.send(**frame)
    return peer, await peer.receive()


async def post(
    stream: trio.SocketStream, conn: h11.Connection, target: str, body: bytes
) -> tuple[int, bytes]:
    """One AOI-3 push on a keep-alive connection (plain h11: nothing to set up per client,
    nothing left for the garbage collector when the server dies mid-request)."""
    headers = [
        ("host", "aoi"), ("authorization", f"Bearer {KEY}"),
        ("content-type", "application/json"), ("content-length", str(len(body))),
    ]  # fmt: skip
    request = conn.send(h11.Request(method="POST", target=target, headers=headers))
    await stream.send_all(request + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
    status, parts = 0, []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionResetError("the server closed the connection")
            conn.receive_data(data)
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            parts.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            conn.start_next_cycle()
            return status, b"".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_every_201_survives_kill_9_during_a_burst(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    store = None
    if backend == "redis":
        store = request.getfixturevalue("own_redis").url
    accepted: set[str] = set()  # ids answered 201
    attempted: set[str] = set()  # payloads of every push sent
    interrupted = 0  # pushes cut off by the kill (in flight at that moment)

    async def pusher(endpoint: str, index: int, killed: trio.Event) -> None:
        nonlocal interrupted
        url = urlsplit(endpoint)
        stream = await trio.open_tcp_stream(url.hostname or "", url.port or 80)
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            sequence = 0
            while not killed.is_set():
                payload = f"{index}-{sequence}"
                sequence += 1
                attempted.add(payload)
                body = json.dumps({"payload": payload, "ttl_s": 600}).encode()
                try:
                    status, answer = await post(stream, conn, url.path, body)
                except (OSError, trio.BrokenResourceError, h11.RemoteProtocolError):
                    interrupted += 1
                    return
                assert status == 201, answer
                accepted.add(json.loads(answer)["id"])

    async def main() -> None:
        with trio.fail_after(DEADLINE_S):
            with server_process(tmp_path, "first", store) as (process, ready):
                here = await urls(process, ready)
                peer, welcome = await hello(here["aoi2"])
                assert welcome["type"] == "welcome"
                registered = await peer.register()
                await peer.send(type="bye")
                await peer.closed()  # offline from here on: everything queues

                killed = trio.Event()
                async with trio.open_nursery() as nursery:
                    for index in range(PUSHERS):
                        nursery.start_soon(pusher, registered["endpoint"], index, killed)
                    await trio.sleep(PUSH_FOR_S)
                    process.kill()  # SIGKILL, with pushes in flight
                    killed.set()
                process.wait(timeout=5)
            assert interrupted > 0, "the kill found no push in flight"
            assert len(accepted) > 50, f"only {len(accepted)} pushes in {PUSH_FOR_S} s"

            with server_process(tmp_path, "second", store) as (process, ready):
                here = await urls(process, ready)
                peer, again = await hello(here["aoi2"], session=str(welcome["session"]))
                assert again["type"] == "welcome" and again["resumed"] is True
                received: list[str] = []
                while True:
                    with trio.move_on_after(QUIET_S) as quiet:
                        frame = await peer.receive()
                    if quiet.cancelled_caught:
                        if accepted <= set(received):
                            break
                        continue  # the outer deadline bounds the wait for the missing ones
                    assert frame["type"] == "notify", frame
                    assert frame["payload"] in attempted
                    received.append(frame["id"])
                    await peer.send(type="ack", ids=[frame["id"]])
                await peer.ws.close()

        assert not accepted - set(received), "201 answered, lost in the crash"
        duplicates = [i for i, n in Counter(received).items() if n > 1]
        assert not duplicates, f"delivered twice after the restart: {sorted(duplicates)[:5]}"

    trio.run(main)
