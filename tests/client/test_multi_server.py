"""Several servers and providers at once: routes, independence, session limits."""

from __future__ import annotations

from pathlib import Path

import trio

from aoi.core.messages import Hello

from .fakes import FakeServer, policy, run, running

CHAT, MAIL, NEWS = "com.example.chat", "com.example.mail", "com.example.news"


def test_app_routes_bind_apps_to_their_servers_over_one_session_each(tmp_path: Path) -> None:
    a, b = FakeServer("a", 1), FakeServer("b", 1)
    doc = policy(a, b, app_routes=[{"app_id": MAIL, "servers": ["b"]}])

    async def main() -> None:
        async with running(tmp_path, [doc], a, b) as h:
            app = await h.app()
            assert (await app.register(CHAT))["server_id"] == "a"
            assert (await app.register(MAIL))["server_id"] == "b"
            assert (await app.register(NEWS))["server_id"] == "a"
            assert len(a.hellos) == 1 and len(b.hellos) == 1  # shared sessions
            await a.notify(CHAT, "c1")
            await b.notify(MAIL, "m1")
            ids = {(await app.expect("app_notification"))["id"] for _ in range(2)}
            assert ids == {"c1", "m1"}

    run(main)


def test_a_server_lost_leaves_the_others_alone(tmp_path: Path) -> None:
    a, b = FakeServer("a", 1), FakeServer("b", 1)
    doc = policy(a, b, app_routes=[{"app_id": MAIL, "servers": ["b"]},
                                   {"app_id": CHAT, "servers": ["a"]}])  # fmt: skip

    async def main() -> None:
        async with running(tmp_path, [doc], a, b) as h:
            chat, mail = await h.app(), await h.app()
            await chat.register(CHAT)
            await mail.register(MAIL)
            a.unreachable = True
            await a.drop()
            # Notifications keep flowing on b while a is gone.
            for n in range(5):
                await b.notify(MAIL, f"m{n}")
                assert (await mail.expect("app_notification"))["id"] == f"m{n}"
                await mail.send(type="app_ack", id=f"m{n}")
                await trio.sleep(10)
            failed = await chat.expect("connection_failed")
            assert failed["reason"] == "exhausted"
            await mail.quiet(600)  # the mail app hears nothing about a
            assert len(b.hellos) == 1 and b.live

    run(main)


def test_without_multi_server_a_provider_holds_one_session(tmp_path: Path) -> None:
    a, b = FakeServer("a", 1), FakeServer("b", 1)
    doc = policy(a, b, multi_server={"allowed": False, "max_concurrent": 1},
                 app_routes=[{"app_id": MAIL, "servers": ["b"]}])  # fmt: skip

    async def main() -> None:
        async with running(tmp_path, [doc], a, b) as h:
            app = await h.app()
            assert (await app.register(CHAT))["server_id"] == "a"
            failed = await app.register(MAIL)
            assert failed["type"] == "connection_failed" and failed["reason"] == "exhausted"
            await app.collect(120)
            assert b.connects == []

    run(main)


def test_each_app_is_served_by_its_own_provider(tmp_path: Path) -> None:
    a, x = FakeServer("a", 1), FakeServer("x", 1)
    first = policy(a)
    second = policy(x, provider="other.example")

    async def main() -> None:
        async with running(tmp_path, [first, second], a, x) as h:
            app = await h.app()
            chat = await app.register(CHAT)
            assert chat["server_id"] == "a"  # the default provider
            assert (await app.register(CHAT, provider="op.example"))["token"] == chat["token"]
            mail = await app.register(MAIL, provider="other.example")
            assert mail["server_id"] == "x"
            ((_, hello),) = x.hellos
            assert isinstance(hello, Hello) and hello.provider == "other.example"
            await app.send(type="app_register", app_id=NEWS, provider="nobody.example")
            error = await app.expect("error")
            assert error["code"] == "invalid_message" and "nobody.example" in error["detail"]

    run(main)


def test_a_refusal_cools_the_server_for_every_group(tmp_path: Path) -> None:
    a, b, d = FakeServer("a", 1), FakeServer("b", 2), FakeServer("d", 2)
    a.reject = ("overloaded", 50.0)
    routes = [{"app_id": CHAT, "servers": ["a", "b"]}, {"app_id": NEWS, "servers": ["a", "d"]}]

    async def main() -> None:
        async with running(tmp_path, [policy(a, b, d, app_routes=routes)], a, b, d) as h:
            app = await h.app()
            assert (await app.register(CHAT))["server_id"] == "b"
            await trio.sleep(10)
            # A new group that never heard a's refusal still keeps away until it ends.
            assert (await app.register(NEWS))["server_id"] == "d"
            assert len(a.hellos) == 1
            a.reject = None
            await app.collect(700)  # both return to a after return_to_preferred_after_s
            assert len(a.hellos) == 2 and a.hellos[1][0] >= 50.0

    run(main)
