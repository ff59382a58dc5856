"""Registration, delivery end to end, and AOI-1 rules, against in-memory servers."""

from __future__ import annotations

from pathlib import Path

import trio

from aoi.core.messages import Ack, Bye, Hello, Nack, Register, Unregister

from .fakes import FakeServer, policy, run, running

APP = "com.example.chat"
OTHER = "com.example.mail"


def test_register_and_deliver_end_to_end(tmp_path: Path) -> None:
    a = FakeServer("a")
    a.welcome_id = "a-node-7"  # AOI-1 names the server by its policy id, not the welcome's

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a) as h:
            app = await h.app()
            registered = await app.register(APP)
            assert registered == {
                "type": "app_registered", "app_id": APP, "token": a.token(APP),
                "endpoint": f"https://a.test/v1/push/{a.token(APP)}", "server_id": "a",
            }  # fmt: skip
            ((_, hello),) = a.hellos
            assert (hello.client_id, hello.credential, hello.provider) == (
                "dev-1",
                "secret-1",
                "op.example",
            )
            await a.notify(APP, "n1", "payload-1")
            got = await app.expect("app_notification")
            assert got == {"type": "app_notification", "id": "n1", "payload": "payload-1",
                           "priority": "normal", "created_at": "2027-01-15T08:00:00Z"}  # fmt: skip
            await app.quiet(5)
            assert a.received_of(Ack) == []  # not before the app acked
            await app.send(type="app_ack", id="n1")
            await app.quiet(1)
            ((_, ack),) = a.received_of(Ack)
            assert ack.ids == ("n1",)

    run(main)


def test_an_app_learns_its_token_before_any_notification_through_it(tmp_path: Path) -> None:
    """Two apps registered in one batch: the server answers the first and sends a queued
    notification for it before it answers the second. The first app still gets
    `app_registered` before that notification, although its batch is not complete yet."""
    a = FakeServer("a")
    a.queued[APP] = ["n1"]

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a) as h:
            first, second = await h.app(), await h.app()
            await first.send(type="app_register", app_id=APP)
            await second.send(type="app_register", app_id=OTHER)
            assert (await second.receive())["type"] == "app_registered"
            got = [await first.receive(), await first.receive()]
            assert [m["type"] for m in got] == ["app_registered", "app_notification"]
            assert len(a.received_of(Register)) == 2

    run(main)


def test_app_not_present_is_nacked_and_resent_on_register(tmp_path: Path) -> None:
    a = FakeServer("a")

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a) as h:
            app = await h.app()
            await app.register(APP)
            await app.ws.close()
            await trio.sleep(1)  # let the client see it go
            await a.notify(APP, "n1")
            await trio.sleep(1)
            ((_, nack),) = a.received_of(Nack)
            assert (nack.id, nack.reason) == ("n1", "app_not_present")
            # Back again: app_register makes the client register, so the server resends.
            app = await h.app()
            again = await app.register(APP)
            assert again["type"] == "app_registered" and again["token"] == a.token(APP)
            assert len(a.received_of(Register)) == 2

    run(main)


def test_each_id_reaches_the_app_once(tmp_path: Path) -> None:
    a = FakeServer("a")

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a) as h:
            app = await h.app()
            await app.register(APP)
            await a.notify(APP, "n1")
            await a.notify(APP, "n1")  # resent before the app acked: not shown twice
            assert (await app.expect("app_notification"))["id"] == "n1"
            await app.quiet(1)
            await app.send(type="app_ack", id="n1")
            await a.notify(APP, "n1")  # redelivered after the ack: acked, never shown
            await a.notify(APP, "n2")
            assert (await app.expect("app_notification"))["id"] == "n2"
            await app.quiet(1)
            assert [m.ids for _, m in a.received_of(Ack)] == [("n1",), ("n1",)]

    run(main)


def test_seen_ids_survive_a_client_restart(tmp_path: Path) -> None:
    a = FakeServer("a")
    state = tmp_path / "state"

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a, state_dir=state) as h:
            app = await h.app()
            first = await app.register(APP)
            await a.notify(APP, "n1")
            await app.expect("app_notification")
            await app.send(type="app_ack", id="n1")
            await app.quiet(1)
        await a.drop()
        async with running(tmp_path, [policy(a)], a, state_dir=state) as h:
            await trio.sleep(1)  # the registration is kept: the client reconnects by itself
            (_, resume) = a.hellos[-1]
            assert resume.session == a.hellos[0][1].session or resume.session == "a-session-000001"
            app = await h.app()
            again = await app.register(APP)
            assert again["token"] == first["token"]
            await a.notify(APP, "n1")  # e.g. the ack was lost with the old connection
            await a.notify(APP, "n2")
            assert (await app.expect("app_notification"))["id"] == "n2"
            acks = [m.ids for _, m in a.received_of(Ack)]
            assert acks[-1] == ("n1",)

    run(main)


def test_isolation_between_app_connections(tmp_path: Path) -> None:
    a = FakeServer("a")
    mail = "com.example.mail"

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a) as h:
            chat_app, mail_app = await h.app(), await h.app()
            await chat_app.register(APP)
            await mail_app.register(mail)
            await a.notify(mail, "m1")
            await a.notify(APP, "c1")
            assert (await mail_app.expect("app_notification"))["id"] == "m1"
            assert (await chat_app.expect("app_notification"))["id"] == "c1"
            await chat_app.quiet(1)
            await mail_app.quiet(1)
            # A second connection registering the same app takes its traffic over.
            newer = await h.app()
            await newer.register(APP)
            await a.notify(APP, "c2")
            assert (await newer.expect("app_notification"))["id"] == "c2"
            await chat_app.quiet(1)

    run(main)


def test_unknown_and_misdirected_aoi1_messages_are_refused_without_closing(tmp_path: Path) -> None:
    a = FakeServer("a")

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a) as h:
            app = await h.app()
            await app.send(type="app_teleport", app_id=APP)
            error = await app.expect("error")
            assert error["code"] == "unsupported_message" and error["fatal"] is False
            await app.send(type="app_registered", app_id=APP, token="t" * 22,
                           endpoint="https://x/", server_id="a")  # fmt: skip
            assert (await app.expect("error"))["code"] == "unexpected_message"
            await app.send(type="app_register")
            assert (await app.expect("error"))["code"] == "invalid_message"
            await app.ws.send(b"\x00binary")  # type: ignore[arg-type]  # a binary frame
            assert (await app.expect("error"))["code"] == "malformed_frame"
            await app.ws.send("[1, 2]")
            assert (await app.expect("error"))["code"] == "not_an_object"
            assert (await app.register(APP))["type"] == "app_registered"

    run(main)


def test_unregister(tmp_path: Path) -> None:
    a = FakeServer("a")

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a) as h:
            app = await h.app()
            registered = await app.register(APP)
            await app.send(type="app_unregister", app_id=APP)
            assert await app.expect("app_unregistered") == {
                "type": "app_unregistered", "app_id": APP,
            }  # fmt: skip
            ((_, unregister),) = a.received_of(Unregister)
            assert unregister.token == registered["token"]
            # No app left: the session is closed with bye.
            await app.quiet(1)
            assert isinstance(a.received[-1][1], Bye)
            await app.send(type="app_unregister", app_id=APP)  # idempotent
            await app.expect("app_unregistered")

    run(main)


def test_unregister_while_offline_is_done_on_next_connect(tmp_path: Path) -> None:
    a, b = FakeServer("a", 1), FakeServer("b", 2)
    mail = "com.example.mail"

    async def main() -> None:
        async with running(tmp_path, [policy(a, b)], a, b) as h:
            app = await h.app()
            registered = await app.register(APP)
            await app.register(mail)
            a.unreachable = True
            await a.drop()
            await app.expect("registration_changed")  # both apps move to b
            await app.expect("registration_changed")
            await app.send(type="app_unregister", app_id=APP)
            await app.expect("app_unregistered")
            assert a.received_of(Unregister) == []
            a.unreachable = False
            await app.collect(700)  # mail returns to a: the stale token goes first
            ((_, unregister),) = a.received_of(Unregister)
            assert unregister.token == registered["token"]

    run(main)


def test_hello_resumes_the_session(tmp_path: Path) -> None:
    a = FakeServer("a")

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a) as h:
            app = await h.app()
            await app.register(APP)
            await a.drop()
            await app.quiet(5)
            first, second = (m for _, m in a.hellos)
            assert isinstance(first, Hello) and first.session is None
            assert second.session == "a-session-000001"

    run(main)


def test_an_id_the_app_acked_is_not_shown_again_whichever_server_sends_it(tmp_path: Path) -> None:
    a, b = FakeServer("a"), FakeServer("b", priority=2)

    async def main() -> None:
        async with running(tmp_path, [policy(a, b)], a, b) as h:
            app = await h.app()
            await app.register(APP)
            await a.notify(APP, "n1", "once")
            assert (await app.expect("app_notification"))["id"] == "n1"
            await app.send(type="app_ack", id="n1")
            a.reject = ("overloaded", 100.0)
            await a.redirect(retry_after_s=100)
            assert (await app.expect("registration_changed", timeout=60))["server_id"] == "b"
            await b.notify(APP, "n1", "once")  # the same id, from another server
            await app.quiet(2)
            assert [m.ids for _, m in b.received_of(Ack)] == [("n1",)]  # acked at once

    run(main)
