"""``scripts/redis``, run as the documentation writes it: a private redis-server with the
persistence the documentation promises, restarted on its port with its data, and a local
Redis Cluster on which keys with one client's hash tag stay together."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import trio
from bench.redis_server import SCRIPT, RedisServer

from aoi.server.store.redis_client import open_redis
from aoi.server.store.resp import MovedError, ReplyError


def script(*args: str | Path) -> str:
    done = subprocess.run(
        [SCRIPT, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def redis_cli(port: int, *args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.replace("\r", "")


def config(port: int, name: str) -> str:
    return redis_cli(port, "CONFIG", "GET", name).split("\n")[1]


def test_start_stop_and_start_again_in_the_background(tmp_path: Path) -> None:
    url = script("start", tmp_path).strip()
    port = int(url.rsplit(":", 1)[1])
    try:
        assert script("start", tmp_path).strip() == url, "a running instance is only reported"
        assert config(port, "appendonly") == "yes"
        assert config(port, "appendfsync") == "always"
        assert config(port, "save") == ""
        assert config(port, "bind") == "127.0.0.1"
        assert redis_cli(port, "SET", "k", "kept") == "OK\n"
        pid = int((tmp_path / "redis.pid").read_text())
    finally:
        script("stop", tmp_path)
    assert not Path(f"/proc/{pid}/cmdline").read_bytes(), "stopped: at most a zombie is left"
    # Started again with another fsync: the same port, the same data.
    assert script("start", tmp_path, "--fsync", "everysec").strip() == url
    try:
        assert config(port, "appendfsync") == "everysec"
        assert redis_cli(port, "GET", "k") == "kept\n"
    finally:
        script("stop", tmp_path)


def test_run_stays_in_the_foreground_and_passes_sigterm_on(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    url = server.start()
    pid = server.pid
    refused = subprocess.run([SCRIPT, "run", tmp_path], capture_output=True, text=True)
    assert refused.returncode == 1
    assert "already running" in refused.stderr
    assert refused.stdout == ""
    server.stop()  # SIGTERM to the script
    assert server.returncode == 0
    assert not Path(f"/proc/{pid}").exists(), "redis-server was reaped by the script"
    assert "ready to accept" in (tmp_path / "redis.log").read_text()
    assert url.startswith("redis://127.0.0.1:")


def test_bad_usage_is_refused() -> None:
    for args in ([], ["start"], ["start", "/tmp/x", "--fsync", "no"], ["cluster", "up"]):
        done = subprocess.run([SCRIPT, *args], capture_output=True, text=True)
        assert done.returncode in (1, 2), args
        assert "scripts/redis" in done.stderr, args


@pytest.mark.slow
def test_a_three_master_cluster_keeps_a_clients_keys_together(tmp_path: Path) -> None:
    with subprocess.Popen(
        [SCRIPT, "cluster", "run", tmp_path], stdout=subprocess.PIPE, text=True
    ) as cluster:
        try:
            assert cluster.stdout is not None
            nodes = [cluster.stdout.readline().strip() for _ in range(3)]
            info = redis_cli(int(nodes[0].rsplit(":", 1)[1]), "CLUSTER", "INFO")
            assert "cluster_state:ok" in info and "cluster_known_nodes:3" in info
            assert "cluster_slots_assigned:16384" in info
            trio.run(one_clients_keys_together, nodes)
        finally:
            cluster.send_signal(signal.SIGTERM)
    assert cluster.returncode == 0


async def one_clients_keys_together(nodes: list[str]) -> None:
    keys = ["{device-0042}:regs", "{device-0042}:queue", "{device-0042}:session"]
    async with open_redis(f"redis://{nodes[0]}") as first:
        slot = await first.execute("CLUSTER", "KEYSLOT", "{device-0042}")
        assert [await first.execute("CLUSTER", "KEYSLOT", k) for k in keys] == [slot] * 3
        assert slot == 15_150  # the third master's (slots 10923-16383)
        with pytest.raises(MovedError) as moved:
            await first.execute("GET", keys[0])
    assert (moved.value.slot, f"{moved.value.host}:{moved.value.port}") == (slot, nodes[2])
    async with open_redis(f"redis://{nodes[2]}") as redis:
        # One client's keys take part in one transaction together ...
        assert await redis.transaction(
            [("HSET", keys[0], "t", "a"), ("ZADD", keys[1], 1, "n"), ("SET", keys[2], "s")]
        ) == [1, 1, b"OK"]
        # ... which keys of two clients cannot.
        with pytest.raises(ReplyError, match="CROSSSLOT"):
            await redis.execute("MGET", keys[0], "{device-0043}:regs")
