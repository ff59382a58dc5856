"""``aoi server --workers 2``: two processes on one port (SO_REUSEPORT), nodes of one fleet on
a real redis-server; a worker killed with ``kill -9`` is started again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from bench.redis_server import RedisServer

from .harness import APP
from .test_crash import CONFIG, hello
from .test_fleet import push

AOI = str(Path(sys.executable).with_name("aoi"))


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid``."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def two_workers(tmp_path: Path, redis: RedisServer) -> tuple[subprocess.Popen[bytes], Any]:
    """``aoi server --workers 2`` on ``redis``, once ready; it and its ready file's URLs."""
    config, ready = tmp_path / "server.toml", tmp_path / "ready.json"
    config.write_text(CONFIG)
    command = [AOI, "server", "--config", str(config), "--store", redis.url]
    command += ["--workers", "2", "--ready-file", str(ready), "--log-level", "warning"]
    with (tmp_path / "server.log").open("wb") as log:
        supervisor = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if supervisor.poll() is not None or time.monotonic() > deadline:
            supervisor.kill()
            raise AssertionError((tmp_path / "server.log").read_text()[-2000:])
        time.sleep(0.05)
    return supervisor, json.loads(ready.read_text())


@pytest.mark.slow
def test_two_workers_share_the_port_and_a_killed_one_comes_back(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    supervisor, here = two_workers(tmp_path, own_redis)
    try:
        workers = children(supervisor.pid)
        assert len(workers) == 2, workers

        async def deliver(round: str, count: int) -> None:
            """Pushes on new connections (spread over the workers) reach one session. What
            an earlier round's worker was killed before recording as acked comes again (at
            least once): acked, and not counted."""
            with trio.fail_after(20):
                peer, welcome = await hello(here["aoi2"])
                try:
                    assert welcome["type"] == "welcome", welcome
                    await peer.send(type="register", req=1, app_id=APP)
                    while (registered := await peer.receive())["type"] == "notify":
                        await peer.send(type="ack", ids=[registered["id"]])
                    assert registered["type"] == "registered", registered
                    endpoint = str(registered["endpoint"])
                    for n in range(count):
                        assert (await push(endpoint, f"{round}{n}"))[0] == 201
                    payloads: set[str] = set()
                    while len(payloads) < count:
                        frame = await peer.receive()
                        await peer.send(type="ack", ids=[frame["id"]])
                        if frame["payload"].startswith(round):
                            payloads.add(frame["payload"])
                    assert payloads == {f"{round}{n}" for n in range(count)}
                finally:
                    await peer.ws.close()

        trio.run(deliver, "a", 20)
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while len(children(supervisor.pid) - {killed}) < 2:
            assert time.monotonic() < deadline, "the killed worker was not started again"
            time.sleep(0.1)
        trio.run(deliver, "b", 20)
        workers = children(supervisor.pid)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=15) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()


@pytest.mark.slow
def test_no_worker_outlives_its_supervisor_killed_with_sigkill(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    supervisor, _ = two_workers(tmp_path, own_redis)
    workers = children(supervisor.pid)
    assert len(workers) == 2
    supervisor.kill()
    supervisor.wait()
    deadline = time.monotonic() + 10
    while alive := [pid for pid in workers if Path(f"/proc/{pid}").exists()]:
        assert time.monotonic() < deadline, f"workers {alive} outlived their supervisor"
        time.sleep(0.05)
