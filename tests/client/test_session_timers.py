"""Keepalive, silence, welcome timeout, resume elsewhere, and policy changes at run time."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import trio

from aoi.client.config import ProviderConfig
from aoi.client.provisioning import Fetched
from aoi.core.messages import Bye, Ping

from .fakes import FakeServer, policy, run, running

APP = "com.example.chat"


def test_keepalive_pings_and_silence_detection(tmp_path: Path) -> None:
    a = FakeServer("a")
    a.keepalive_s = 30

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a) as h:
            app = await h.app()
            await app.register(APP)
            await app.quiet(3600)
            pings = [t for t, _ in a.received_of(Ping)]
            assert 115 <= len(pings) <= 121  # one per keepalive_s without sending
            assert len(a.hellos) == 1  # and the session stayed up
            # The connection goes half-open: nothing comes back any more.
            a.mute = True
            muted_at = trio.current_time()
            while len(a.hellos) < 2:
                await trio.sleep(0.1)
            lost_after = a.hellos[1][0] - muted_at
            assert 30 <= lost_after <= 2 * 30 + 0.5  # silence for 2 x keepalive, then backoff

    run(main)


def test_policy_keepalive_caps_the_servers(tmp_path: Path) -> None:
    a = FakeServer("a")
    a.keepalive_s = 600

    async def main() -> None:
        async with running(tmp_path, [policy(a, keepalive_s=60)], a) as h:
            app = await h.app()
            await app.register(APP)
            await app.quiet(601)
            assert len(a.received_of(Ping)) == 10

    run(main)


def test_no_welcome_in_time_is_unreachable(tmp_path: Path) -> None:
    a, b = FakeServer("a", 1), FakeServer("b", 2)
    a.silent = True

    async def main() -> None:
        async with running(tmp_path, [policy(a, b)], a, b) as h:
            app = await h.app()
            registered = await app.register(APP)
            assert registered["server_id"] == "b"
            assert 10.0 <= b.hellos[0][0] - a.hellos[0][0] <= 10.5

    run(main)


def test_session_not_resumed_gets_new_tokens(tmp_path: Path) -> None:
    a = FakeServer("a")

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a) as h:
            app = await h.app()
            first = await app.register(APP)
            a.sessions.clear()  # the server forgot the session
            await a.drop()
            changed = await app.expect("registration_changed")
            assert changed["reason"] == "resumed_elsewhere" and changed["server_id"] == "a"
            assert changed["token"] != first["token"]
            await app.quiet(5)

    run(main)


def test_server_bye_is_a_lost_session(tmp_path: Path) -> None:
    a = FakeServer("a")

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a) as h:
            app = await h.app()
            await app.register(APP)
            await a.bye()
            await app.quiet(5)  # resumed at once: the app sees nothing
            assert len(a.hellos) == 2 and a.hellos[1][1].session == "a-session-000001"

    run(main)


def test_policy_change_moves_apps(tmp_path: Path) -> None:
    a, b = FakeServer("a"), FakeServer("b")

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a, b) as h:
            app = await h.app()
            assert (await app.register(APP))["server_id"] == "a"
            (tmp_path / "policy-0.json").write_text(json.dumps(policy(b, policy_version=2)))
            changed = await app.expect("registration_changed", timeout=4000)  # next refresh
            assert changed["server_id"] == "b" and changed["reason"] == "reallocated"
            await app.quiet(5)
            assert isinstance(a.received[-1][1], Bye)

    run(main)


def test_apps_wait_for_a_first_policy(tmp_path: Path) -> None:
    """A provisioning endpoint that is only busy at start (5xx) does not stop the client."""
    a = FakeServer("a")
    url = "https://op.example/v1/provisioning"
    answers: list[Fetched | Exception] = [
        Fetched(503, {}, b""),
        Fetched(503, {"Retry-After": "30"}, b""),
    ]

    async def fetch(address: str, headers: Mapping[str, str]) -> Fetched:
        if answers:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return Fetched(200, {}, json.dumps(policy(a)).encode())

    provider = ProviderConfig("op.example", provisioning_url=url)

    async def main() -> None:
        async with running(tmp_path, [], a, providers=[provider], fetch=fetch) as h:
            app = await h.app()
            failed = await app.register(APP)
            assert failed["type"] == "connection_failed" and failed["reason"] == "unreachable"
            changed = await app.expect("registration_changed")
            assert changed["server_id"] == "a"
            await app.expect("connection_restored")
            assert trio.current_time() >= 30  # after the 503's Retry-After

    run(main)
