"""The Redis client against a real redis-server: commands, pipelines, transactions, scripts,
and what happens when the connection or Redis itself goes away."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from bench.redis_server import Fsync, RedisServer, redis_server

from aoi.core.policy import Backoff
from aoi.server.store.redis_client import RedisClient, open_redis
from aoi.server.store.resp import (
    ClientClosed,
    ConnectionLost,
    ExecAbortError,
    NoScriptError,
    ReplyError,
    Script,
    Unreachable,
)

T = TypeVar("T")
FAST = Backoff(initial_ms=10, max_ms=50, multiplier=2.0)  # reconnect quickly in tests


def with_client(url: str, body: Callable[[RedisClient], Awaitable[T]], **options: Any) -> T:
    async def main() -> T:
        with trio.fail_after(30):
            async with open_redis(url, backoff=FAST, **options) as client:
                return await body(client)

    return trio.run(main)


def key(request: pytest.FixtureRequest, name: str) -> str:
    """A key of this test's own on the shared Redis."""
    return f"{{{request.node.name}}}:{name}"


# --- commands, pipelines, transactions, scripts -------------------------------------------


def test_commands_and_their_replies(
    shared_redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    k = key(request, "k")

    async def body(redis: RedisClient) -> None:
        assert await redis.execute("SET", k, "v") == b"OK"
        assert await redis.execute("GET", k) == b"v"
        assert await redis.execute("GET", k + "-missing") is None
        assert await redis.execute("HSET", k + "h", "a", 1, "b", 2.5) == 2
        assert await redis.execute("HGETALL", k + "h") == [b"a", b"1", b"b", b"2.5"]
        with pytest.raises(ReplyError) as refused:
            await redis.execute("HGET", k, "a")  # a string, not a hash
        assert refused.value.code == "WRONGTYPE"
        assert await redis.execute("GET", k) == b"v", "the connection goes on after an error"

    with_client(shared_redis.url, body)


def test_a_pipeline_returns_each_reply_in_its_place(
    shared_redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    k = key(request, "k")

    async def body(redis: RedisClient) -> list[Any]:
        return await redis.pipeline(
            [("SET", k, "1"), ("INCR", k), ("HSET", k, "f", "v"), ("INCR", k), ("GET", k)]
        )

    replies = with_client(shared_redis.url, body)
    assert replies[:2] == [b"OK", 2]
    assert isinstance(replies[2], ReplyError) and replies[2].code == "WRONGTYPE"
    assert replies[3:] == [3, b"3"], "the commands after a refused one still ran"


def test_many_callers_share_the_connection_and_each_gets_its_own_reply(
    shared_redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    async def body(redis: RedisClient) -> None:
        async def echo(i: int) -> None:
            value = f"value-{i}".encode() * (i % 7)
            await redis.execute("SET", key(request, str(i)), value)
            assert await redis.execute("GET", key(request, str(i))) == value
            assert await redis.pipeline([("ECHO", i), ("ECHO", -i)]) == [
                str(i).encode(),
                str(-i).encode(),
            ]

        async with trio.open_nursery() as nursery:
            for i in range(2000):
                nursery.start_soon(echo, i)
        assert redis.connections == 1

    with_client(shared_redis.url, body)


def test_a_transaction_runs_whole_or_not_at_all(
    shared_redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    k = key(request, "n")

    async def body(redis: RedisClient) -> None:
        assert await redis.transaction([("INCR", k), ("INCRBY", k, 10), ("GET", k)]) == [
            1,
            11,
            b"11",
        ]
        with pytest.raises(ExecAbortError) as aborted:
            await redis.transaction([("INCR", k), ("INCRBY", k)])  # refused while queued
        assert isinstance(aborted.value.__cause__, ReplyError)
        assert "wrong number of arguments" in aborted.value.__cause__.message
        assert await redis.execute("GET", k) == b"11", "nothing of the aborted one ran"
        # A command failing while EXEC runs fails alone: Redis has no rollback.
        replies = await redis.transaction([("INCR", k), ("HSET", k, "f", "v"), ("INCR", k)])
        assert replies[0] == 12 and isinstance(replies[1], ReplyError) and replies[2] == 13

    with_client(shared_redis.url, body)


def test_scripts_run_by_sha_and_are_sent_again_after_a_flush(
    shared_redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    k = key(request, "n")
    add = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")

    async def body(redis: RedisClient) -> None:
        await redis.execute("SCRIPT", "FLUSH")
        with pytest.raises(NoScriptError):
            await redis.execute(*add.evalsha([k], [1]))
        assert await redis.run_script(add, [k], [5]) == 5  # EVALSHA, NOSCRIPT, then EVAL
        assert await redis.execute("SCRIPT", "EXISTS", add.sha) == [1]
        assert await redis.run_script(add, [k], [5]) == 10
        await redis.execute("SCRIPT", "FLUSH")
        assert await redis.run_script(add, [k], [1]) == 11

    with_client(shared_redis.url, body)


def test_a_script_error_raises_and_leaves_the_connection_usable(
    shared_redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    k = key(request, "k")
    refuses = Script("return redis.error_reply('AOI_REFUSED token ' .. ARGV[1])")
    breaks = Script("local x = nil; return x.field")
    half = Script("redis.call('SET', KEYS[1], 'written'); return redis.call('HGET', KEYS[1], 'f')")

    async def body(redis: RedisClient) -> None:
        with pytest.raises(ReplyError) as refused:
            await redis.run_script(refuses, [], ["t-1"])
        assert (refused.value.code, refused.value.message) == (
            "AOI_REFUSED",
            "AOI_REFUSED token t-1",
        )
        with pytest.raises(ReplyError, match="attempt to index"):
            await redis.run_script(breaks)
        with pytest.raises(ReplyError, match="WRONGTYPE"):
            await redis.run_script(half, [k])
        # A script is not undone by its error: what it wrote before stays written.
        assert await redis.execute("GET", k) == b"written"

    with_client(shared_redis.url, body)


def test_a_large_value_among_small_ones(
    shared_redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    big = os.urandom(1024) * (8 * 1024)  # 8 MiB: many reads and writes of the socket

    async def body(redis: RedisClient) -> None:
        async def small(i: int) -> None:
            assert await redis.execute("ECHO", i) == str(i).encode()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(redis.execute, "SET", key(request, "big"), big)
            for i in range(200):
                nursery.start_soon(small, i)
        assert await redis.execute("STRLEN", key(request, "big")) == len(big)
        assert await redis.execute("GET", key(request, "big")) == big

    with_client(shared_redis.url, body)


def test_a_cancelled_caller_does_not_take_the_next_callers_reply(
    shared_redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    k = key(request, "k")

    async def body(redis: RedisClient) -> None:
        await redis.execute("SET", k, "v")
        with trio.move_on_after(0.05) as waited:
            await redis.execute("BLPOP", k + "-empty", 0.3)  # blocks the connection 0.3 s
        assert waited.cancelled_caught
        assert await redis.execute("GET", k) == b"v"  # not BLPOP's nil, which came first
        assert redis.connections == 1

    with_client(shared_redis.url, body)


# --- connecting ---------------------------------------------------------------------------


def test_urls_select_the_database_and_reach_the_unix_socket(
    shared_redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    k = key(request, "k")

    async def body(redis: RedisClient) -> None:
        await redis.execute("SET", k, "in db 3")

    with_client(f"{shared_redis.url}/3", body)
    assert with_client(f"unix://{shared_redis.socket}?db=3", lambda r: r.execute("GET", k)) == (
        b"in db 3"
    )
    assert with_client(shared_redis.url, lambda r: r.execute("GET", k)) is None  # db 0


def test_connecting_fails_clearly() -> None:
    with socket.socket() as s:  # a port that was just free: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        with pytest.raises(Unreachable, match=f"127.0.0.1:{port}"):
            async with open_redis(f"redis://127.0.0.1:{port}"):
                pass

    trio.run(main)


def test_a_refused_handshake_raises_its_error(shared_redis: RedisServer) -> None:
    async def main() -> None:
        with pytest.raises(ReplyError, match="AUTH"):  # this Redis has no password
            async with open_redis(shared_redis.url.replace("//", "//:secret@")):
                pass

    trio.run(main)


def test_calls_outside_run_are_refused(shared_redis: RedisServer) -> None:
    async def main() -> None:
        client = RedisClient(shared_redis.url)
        with pytest.raises(ClientClosed):
            await client.execute("PING")
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            assert await client.execute("PING") == b"PONG"
            with pytest.raises(RuntimeError, match="once"):
                await client.run()
            nursery.cancel_scope.cancel()
        assert not client.connected
        with pytest.raises(ClientClosed):
            await client.execute("PING")

    trio.run(main)


# --- losing the connection ---------------------------------------------------------------


def test_connection_lost_mid_pipeline(
    shared_redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    k = key(request, "k")

    async def body(redis: RedisClient) -> None:
        me = await redis.execute("CLIENT", "ID")
        lost: list[BaseException] = []

        async def pipeline() -> None:
            try:
                await redis.pipeline(
                    [
                        ("SET", k + "-before", 1),
                        ("BLPOP", k + "-empty", 5),
                        ("SET", k + "-after", 1),
                    ]
                )
            except ConnectionLost as exc:
                lost.append(exc)

        async with trio.open_nursery() as nursery, open_redis(shared_redis.url) as other:
            nursery.start_soon(pipeline)
            while await other.execute("EXISTS", k + "-before") == 0:  # the pipeline is in BLPOP
                await trio.sleep(0.005)
            assert await other.execute("CLIENT", "KILL", "ID", me) == 1
        assert len(lost) == 1
        # The lost pipeline is not sent again: what ran before the cut ran once, the rest never.
        assert await redis.execute("EXISTS", k + "-after") == 0
        assert await redis.execute("CLIENT", "ID") != me
        assert redis.connections == 2

    with_client(shared_redis.url, body)


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_redis_killed_and_restarted(tmp_path: Path, fsync: Fsync) -> None:
    """Commands in flight when Redis dies fail; commands made while it is down wait for it;
    every write it acknowledged before its process was killed is there after, with either
    fsync policy (the append-only file is written before the reply; what ``always`` adds,
    an fsync before the reply, matters when the machine fails, which no test here does)."""

    async def body(redis: RedisClient) -> None:
        acknowledged = 0
        lost = trio.Event()

        async def writer() -> None:
            nonlocal acknowledged
            while True:
                try:
                    await redis.execute("INCR", "counter")
                except ConnectionLost:
                    lost.set()
                    return
                acknowledged += 1

        writers = 20
        async with trio.open_nursery() as nursery:
            for _ in range(writers):
                nursery.start_soon(writer)
            while acknowledged < 2000:
                await trio.sleep(0.01)
            await trio.to_thread.run_sync(server.kill)
            # An INCR in flight fails; when every reply was read before the loss was (the
            # reader can take the replies and the end of the stream at once), none was in
            # flight, and the client is seen disconnected instead.
            while not lost.is_set() and redis.connected:
                await trio.sleep(0.01)
            # The writers whose next INCR came after the loss wait for a connection (nothing
            # of theirs was sent): stop them.
            nursery.cancel_scope.cancel()

        async def restart_later() -> None:
            await trio.sleep(0.2)
            await trio.to_thread.run_sync(server.start)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(restart_later)
            after = await redis.execute("GET", "counter")  # made while Redis is down
        assert after is not None
        # At most one INCR per writer was in flight when Redis died: it may have run or not.
        assert acknowledged <= int(after) <= acknowledged + writers
        assert redis.connections == 2

    with redis_server(tmp_path, fsync) as server:
        with_client(server.url, body)


def test_a_redis_that_stops_answering_is_left_after_reply_timeout(own_redis: RedisServer) -> None:
    async def body(redis: RedisClient) -> None:
        os.kill(own_redis.pid, signal.SIGSTOP)  # the socket stays open, nothing answers
        try:
            with pytest.raises(ConnectionLost, match="no reply within"):
                await redis.execute("PING")
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)
        assert await redis.execute("PING") == b"PONG"
        assert redis.connections == 2

    with_client(own_redis.url, body, reply_timeout=0.3)
