"""The fleet's rules, on two servers in one process sharing one redis-server: collapse,
cancel, unregistration and takeover across nodes, and a Redis restart under a session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import trio
from bench.redis_server import RedisServer

from aoi.server.store.redis_store import RedisStore

from .harness import KEY, Env, config, running


@asynccontextmanager
async def fleet(tmp_path: Path, redis: RedisServer) -> AsyncIterator[tuple[Env, Env]]:
    cfg = config(tmp_path, server={"store": redis.url})
    async with running(cfg) as node_1, running(cfg) as node_2:
        yield node_1, node_2


def on(node: Env, endpoint: str) -> str:
    return node.here.http + urlsplit(endpoint).path


def test_a_collapse_key_replaces_what_another_node_accepted(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    async def main() -> None:
        async with fleet(tmp_path, own_redis) as (node_1, node_2):
            endpoint, session = await node_1.offline()
            first = await node_1.push(endpoint, "score 1-0", collapse_key="score")
            second = await node_2.push(on(node_2, endpoint), "score 2-0", collapse_key="score")
            assert (first.status_code, second.status_code) == (201, 201)
            report = await node_2.report(first.headers["location"])
            assert report["status"] == "cancelled"
            peer, _ = await node_1.hello(session=session)
            notify = await peer.receive()
            assert notify["payload"] == "score 2-0"
            await peer.send(type="ack", ids=[notify["id"]])
            await node_1.settled(second.headers["location"], "delivered")

    trio.run(main)


def test_a_notification_cancelled_on_one_node_never_reaches_the_client_on_another(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    async def main() -> None:
        async with fleet(tmp_path, own_redis) as (node_1, node_2):
            endpoint, session = await node_1.offline()
            doomed = await node_1.push(endpoint, "doomed")
            kept = await node_1.push(endpoint, "kept")
            location = doomed.headers["location"]
            cancel = await node_2.http.delete(
                node_2.here.http + location, headers={"authorization": "Bearer " + KEY}
            )
            assert (cancel.status_code, cancel.json()["status"]) == (200, "cancelled")
            peer, _ = await node_1.hello(session=session)
            notify = await peer.receive()
            assert notify["id"] == kept.json()["id"]
            with trio.move_on_after(0.3):
                extra = await peer.receive()
                raise AssertionError(f"a cancelled notification arrived: {extra}")

    trio.run(main)


def test_a_token_unregistered_on_one_node_answers_410_on_another(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    async def main() -> None:
        async with fleet(tmp_path, own_redis) as (node_1, node_2):
            peer, _ = await node_1.hello()
            registered = await peer.register()
            elsewhere = on(node_2, registered["endpoint"])
            assert (await node_2.push(elsewhere, "known on node 2 from now on")).status_code == 201
            await peer.send(type="unregister", req=2, token=registered["token"])
            while (frame := await peer.receive())["type"] != "unregistered":
                assert frame["type"] == "notify", frame
            gone = await node_2.push(elsewhere, "too late")
            assert (gone.status_code, gone.json()["error"]) == (410, "token_unregistered")

    trio.run(main)


def test_resuming_on_another_node_closes_the_first_connection_4409(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    async def main() -> None:
        async with fleet(tmp_path, own_redis) as (node_1, node_2):
            first, welcome = await node_1.hello()
            endpoint = (await first.register())["endpoint"]
            second, again = await node_2.hello(session=welcome["session"])
            assert (again["resumed"], again["session"]) == (True, welcome["session"])
            closed = await first.closed()
            assert closed.code == 4409
            assert (await node_1.push(endpoint, "follows the session")).status_code == 201
            notify = await second.receive()
            assert notify["payload"] == "follows the session"

    trio.run(main)


def test_a_session_keeps_receiving_across_a_redis_restart(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    async def main() -> None:
        async with fleet(tmp_path, own_redis) as (node_1, node_2):
            peer, _ = await node_1.hello()
            endpoint = on(node_2, (await peer.register())["endpoint"])
            own_redis.kill()  # SIGKILL; the append-only file has every acknowledged write
            own_redis.start()
            with trio.fail_after(15):
                while (response := await node_2.push(endpoint, "after")).status_code != 201:
                    assert response.status_code == 503, response.text
                    await trio.sleep(0.2)
            notify = await peer.receive()
            assert notify["payload"] == "after"

    trio.run(main)


class SlowSessions(RedisStore):
    """Recording a session takes 0.3 s: long enough for a connection to end meanwhile."""

    async def set_session(self, client_id: str, session_id: str) -> None:
        await trio.sleep(0.3)
        await super().set_session(client_id, session_id)


def test_a_new_connection_keeps_its_client_while_the_old_one_ends_during_its_hello(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    async def main() -> None:
        cfg = config(tmp_path, server={"store": own_redis.url})
        async with running(cfg, store=SlowSessions(own_redis.url)) as node:
            old, _ = await node.hello()
            endpoint = (await old.register())["endpoint"]

            async def end_old() -> None:
                await trio.sleep(0.1)  # the new hello is being recorded by then
                await old.ws.close()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(end_old)
                new, welcome = await node.hello()
            assert welcome["type"] == "welcome", welcome
            assert (await node.push(endpoint, "to the new connection")).status_code == 201
            notify = await new.receive()
            assert notify["payload"] == "to the new connection"

    trio.run(main)
