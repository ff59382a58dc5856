"""Pub/sub against a real redis-server: messages in order, and a gap where the subscription
was down, then messages again."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

import pytest
import trio
from bench.redis_server import RedisServer

from aoi.core.policy import Backoff
from aoi.server.store.redis_client import RedisClient, open_redis
from aoi.server.store.redis_pubsub import Gap, Message, Subscription, open_subscription
from aoi.server.store.resp import ClientClosed, ConnectionLost, Unreachable

FAST = Backoff(initial_ms=10, max_ms=50, multiplier=2.0)


async def publish_until_received(
    redis: RedisClient, channel: str, subscription: Subscription, data: bytes
) -> list[Message | Gap]:
    """Publish ``data`` until it arrives (a resubscription may not have happened yet); what
    arrived up to it."""
    seen: list[Message | Gap] = []
    while True:
        with contextlib.suppress(ConnectionLost):  # the publisher's Redis may have restarted
            await redis.execute("PUBLISH", channel, data)
        with trio.move_on_after(0.05):
            while True:
                event = await subscription.receive()
                seen.append(event)
                if event == Message(channel.encode(), data):
                    return seen


def test_messages_arrive_in_order(
    shared_redis: RedisServer, request: pytest.FixtureRequest
) -> None:
    channel = f"{request.node.name}:node-1"

    async def main() -> None:
        with trio.fail_after(30):
            async with (
                open_redis(shared_redis.url) as redis,
                open_subscription(shared_redis.url, [channel, channel + "-b"]) as subscription,
            ):
                for start in range(0, 10_000, 500):
                    await redis.pipeline(
                        [("PUBLISH", channel, str(i)) for i in range(start, start + 500)]
                    )
                await redis.execute("PUBLISH", channel + "-b", "last")
                received = [await subscription.receive() for _ in range(10_001)]
        assert received[:-1] == [Message(channel.encode(), str(i).encode()) for i in range(10_000)]
        assert received[-1] == Message(channel.encode() + b"-b", b"last")

    trio.run(main)


def restart(server: RedisServer) -> None:
    server.kill()
    server.start()


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda server: None, id="connection-killed"),
        pytest.param(restart, id="restart"),
    ],
)
def test_a_lost_subscription_comes_back_after_a_gap(
    own_redis: RedisServer, cut: Callable[[RedisServer], None]
) -> None:
    async def main() -> None:
        with trio.fail_after(30):
            async with (
                open_subscription(own_redis.url, ["node-1"], backoff=FAST) as subscription,
                open_redis(own_redis.url, backoff=FAST) as redis,
            ):
                assert await publish_until_received(redis, "node-1", subscription, b"before")
                await redis.execute("CLIENT", "KILL", "TYPE", "pubsub")
                await trio.to_thread.run_sync(cut, own_redis)
                after = await publish_until_received(redis, "node-1", subscription, b"after")
        assert isinstance(after[0], Gap), after
        assert all(isinstance(event, Message) for event in after[1:])
        assert subscription.connections == 2

    trio.run(main)


def test_a_silent_redis_is_noticed_by_the_keepalive(own_redis: RedisServer) -> None:
    async def resume_later() -> None:
        await trio.sleep(0.5)
        os.kill(own_redis.pid, signal.SIGCONT)

    async def main() -> None:
        with trio.fail_after(30):
            async with open_subscription(
                own_redis.url, ["node-1"], backoff=FAST, keepalive_s=0.1, reply_timeout=0.2
            ) as subscription:
                os.kill(own_redis.pid, signal.SIGSTOP)  # the socket stays open, nothing answers
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(resume_later)
                        # PING unanswered: the connection is dropped; a new one is made once
                        # Redis answers again.
                        assert await subscription.receive() == Gap("no answer to PING within 0.2 s")
                finally:
                    os.kill(own_redis.pid, signal.SIGCONT)
                async with open_redis(own_redis.url) as redis:
                    after = await publish_until_received(redis, "node-1", subscription, b"after")
        assert after == [Message(b"node-1", b"after")]
        assert subscription.connections == 2

    trio.run(main)


def test_opening_fails_clearly_and_a_stopped_subscription_ends(shared_redis: RedisServer) -> None:
    async def main() -> None:
        with pytest.raises(Unreachable):
            async with open_subscription("unix:///nonexistent/redis.sock", ["c"]):
                pass
        async with open_subscription(shared_redis.url, ["c"]) as subscription:
            pass
        assert [event async for event in subscription] == []
        with pytest.raises(ClientClosed):
            await subscription.receive()
        with pytest.raises(ValueError, match="channel"):
            Subscription(shared_redis.url, [])

    trio.run(main)
