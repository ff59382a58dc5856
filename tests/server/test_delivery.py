"""Delivery through a real server: register, push, notify, ack, nack, cancel, reports, resume,
TTL."""

from __future__ import annotations

import time
from pathlib import Path

import trio
import trio.testing

from aoi.server.clock import Clock

from .harness import KEY, config, running


def test_push_is_delivered_acked_and_reported(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            peer, welcome = await env.hello()
            assert welcome["type"] == "welcome" and welcome["server_id"] == "a"
            registered = await peer.register()
            assert registered["endpoint"] == f"{env.here.http}/v1/push/{registered['token']}"
            response = await env.push(registered["endpoint"], "hello app")
            assert response.status_code == 201
            accepted = response.json()
            assert response.headers["location"] == f"/v1/messages/{accepted['id']}"
            notify = await peer.receive()
            assert notify["type"] == "notify"
            assert (notify["id"], notify["payload"]) == (accepted["id"], "hello app")
            await peer.send(type="ack", ids=[notify["id"]])
            report = await env.settled(response.headers["location"], "delivered")
            assert report["delivered_at"] >= report["created_at"]

    trio.run(main)


def test_offline_client_gets_its_queue_on_resume_in_priority_order(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            endpoint, session = await env.offline()
            for n in range(3):
                assert (await env.push(endpoint, f"normal-{n}")).status_code == 201
            assert (await env.push(endpoint, "urgent", priority="high")).status_code == 201
            peer, again = await env.hello(session=session)
            assert again["resumed"] is True and again["session"] == session
            payloads = [(await peer.receive())["payload"] for _ in range(4)]
            assert payloads == ["urgent", "normal-0", "normal-1", "normal-2"]

    trio.run(main)


def test_unacked_notification_is_redelivered_on_the_next_connection(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            peer, welcome = await env.hello()
            endpoint = (await peer.register())["endpoint"]
            assert (await env.push(endpoint, "once")).status_code == 201
            first = await peer.receive()
            await peer.ws.close(1000)  # gone without acking
            peer, _ = await env.hello(session=welcome["session"])
            again = await peer.receive()
            assert (again["id"], again["payload"]) == (first["id"], "once")

    trio.run(main)


def test_expired_notifications_never_arrive(tmp_path: Path) -> None:
    """In virtual time: an hour's TTL passes at once (the server reads every time through
    its clock, which here follows trio's MockClock)."""
    mock = trio.testing.MockClock(rate=1.0)  # moves with real time too, and jumps

    async def main() -> None:
        clock = Clock.following_trio(time.time())
        async with running(config(tmp_path), clock=clock) as env:
            endpoint, session = await env.offline()
            short = await env.push(endpoint, "short-lived", ttl_s=3600)
            assert (await env.push(endpoint, "long-lived", ttl_s=86400)).status_code == 201
            mock.jump(3600.5)
            peer, _ = await env.hello(session=session)
            assert (await peer.receive())["payload"] == "long-lived"
            await env.settled(short.headers["location"], "expired")

    trio.run(main, clock=mock)


def test_ttl_0_is_never_sent_and_an_ack_after_the_ttl_leaves_it_expired(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            peer, _ = await env.hello()
            endpoint = (await peer.register())["endpoint"]
            never = await env.push(endpoint, "ttl 0", ttl_s=0)
            assert never.status_code == 201
            late = await env.push(endpoint, "acked late", ttl_s=1)
            notify = await peer.receive()  # the ttl 0 one, pushed first, is not sent ahead
            assert notify["payload"] == "acked late"
            await env.settled(never.headers["location"], "expired")
            await env.settled(late.headers["location"], "expired")
            await peer.send(type="ack", ids=[notify["id"]])
            await peer.send(type="ping", ts=1)
            assert (await peer.receive())["type"] == "pong"  # the ack was read before it
            assert (await env.report(late.headers["location"]))["status"] == "expired"

    trio.run(main)


def test_a_nacked_notification_waits_for_its_app_to_register_again(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            peer, _ = await env.hello()
            endpoint = (await peer.register())["endpoint"]
            assert (await env.push(endpoint, "app away")).status_code == 201
            away = await peer.receive()
            await peer.send(type="nack", id=away["id"], reason="app_not_present")
            assert (await env.push(endpoint, "next")).status_code == 201
            assert (await peer.receive())["payload"] == "next"  # not the nacked one again
            assert (await peer.register(req=2))["type"] == "registered"  # the app is back
            again = await peer.receive()
            assert (again["id"], again["payload"]) == (away["id"], "app away")

    trio.run(main)


def test_notify_carries_the_ttl_as_pushed(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            endpoint, session = await env.offline()
            assert (await env.push(endpoint, "later", ttl_s=600)).status_code == 201
            await trio.sleep(1.1)
            peer, _ = await env.hello(session=session)
            assert (await peer.receive())["ttl_s"] == 600  # the client computes the same expiry

    trio.run(main)


def test_a_notification_sent_and_not_acked_is_cancelled_and_its_ack_ignored(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            peer, welcome = await env.hello()
            endpoint = (await peer.register())["endpoint"]
            pushed = await env.push(endpoint, "regret")
            notify = await peer.receive()  # on the wire: queued until acked (protocol.md 3.4)
            gone = await env.http.delete(
                env.here.http + pushed.headers["location"],
                headers={"authorization": f"Bearer {KEY}"},
            )
            assert (gone.status_code, gone.json()["status"]) == (200, "cancelled")
            await peer.send(type="ack", ids=[notify["id"]])
            await peer.send(type="ping", ts=1)
            assert (await peer.receive())["type"] == "pong"  # the ack was read before it
            assert (await env.report(pushed.headers["location"]))["status"] == "cancelled"
            await peer.ws.close(1000)
            peer, _ = await env.hello(session=welcome["session"])
            await peer.send(type="ping", ts=2)
            assert (await peer.receive())["type"] == "pong", "the cancelled one came again"

    trio.run(main)
