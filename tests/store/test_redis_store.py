"""What the Redis store alone promises beside the contract suite: Redis going away and
coming back, against a real redis-server (``appendfsync always``)."""

from __future__ import annotations

import pytest
import trio
from bench.redis_server import RedisServer

from aoi.server.store import StoreError
from aoi.server.store.redis_store import RedisStore
from aoi.server.store.routes import ROUTES, new_token, route_of, route_of_client

from .test_store_contract import CHAT, notification


def test_every_acknowledged_write_survives_redis_killed_and_started_again(
    own_redis: RedisServer,
) -> None:
    stored = [notification(f"n-{i}", created_at=1000 + i) for i in range(50)]

    async def main() -> None:
        store = RedisStore(own_redis.url, timeout_s=1.0)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(store.run)
                await store.add_registration(CHAT)
                for n in stored:
                    await store.add_notification(n)
                own_redis.kill()  # SIGKILL: no save on the way out
                with pytest.raises(StoreError):
                    await store.add_notification(notification("lost", created_at=2000))
                assert store.failure is not None, "the failure is reported while it lasts"
                own_redis.start()
                while True:  # as the server's probe loop does
                    try:
                        await store.probe()
                        break
                    except StoreError:
                        await trio.sleep(0.1)
                assert store.failure is None
                assert await store.queued_for("device-1") == tuple(stored)
                assert await store.get_notification("lost") is None  # refused, not half-made
                nursery.cancel_scope.cancel()

    trio.run(main)


def test_tokens_and_ids_end_with_their_clients_route() -> None:
    routes = {route_of_client(f"device-{i}") for i in range(20_000)}
    assert len(routes) == ROUTES
    for client in ("device-1", "dev-1", "ü-client"):
        route = route_of_client(client)
        assert route_of(new_token(client)) == route
        assert new_token(client) != new_token(client)
