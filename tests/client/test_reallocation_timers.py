"""Reallocation as the policy says, with every timer checked in virtual time."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
import trio

from aoi.core.messages import Bye, Unregister

from .fakes import FakeServer, policy, run, running

APP = "com.example.chat"
OTHER = "com.example.mail"
MS = 0.001


def test_overload_reject_moves_to_next_server_and_honours_retry_after(tmp_path: Path) -> None:
    a, b = FakeServer("a", 1), FakeServer("b", 2)
    a.reject = ("overloaded", 2.5)

    async def main() -> None:
        async with running(tmp_path, [policy(a, b)], a, b) as h:
            app = await h.app()
            registered = await app.register(APP)
            assert registered["server_id"] == "b"
            ((refused_at, _),) = a.hellos
            ((welcomed_at, _),) = b.hellos
            assert welcomed_at - refused_at <= 0.5  # uniform(0, initial_ms) before the next
            # b sheds us: a is the only other candidate and must not hear from us before
            # its retry_after_s has passed. Cooling, it is skipped: the round ends at once.
            a.reject = None
            await b.redirect(retry_after_s=100)
            redirected_at = trio.current_time()
            failed = await app.expect("connection_failed")
            assert failed["reason"] == "exhausted"
            assert failed["retry_after_s"] >= refused_at + 2.5 - redirected_at
            changed = await app.expect("registration_changed")
            assert changed["server_id"] == "a" and changed["reason"] == "reallocated"
            (second_at, _) = a.hellos[1]
            assert second_at >= refused_at + 2.5
            assert changed["token"] == a.token(APP) != registered["token"]
            assert changed["endpoint"].startswith("https://a.test/")
            assert (await app.expect("connection_restored"))["server_id"] == "a"

    run(main)


def test_single_server_retry_after_to_the_millisecond(tmp_path: Path) -> None:
    a = FakeServer("a")
    a.reject = ("overloaded", 2.5)
    doc = policy(a, reallocation={"backoff": {"initial_ms": 1, "max_ms": 60000,
                                              "multiplier": 2.0, "jitter": "full"}})  # fmt: skip

    async def main() -> None:
        async with running(tmp_path, [doc], a) as h:
            app = await h.app()
            failed = await app.register(APP)
            assert failed["type"] == "connection_failed"
            assert failed["reason"] == "exhausted" and failed["fallback"] == "direct"
            a.reject = ("overloaded", 7.25)
            while len(a.hellos) < 2:
                await trio.sleep(0.1)
            a.reject = None
            await app.expect("registration_changed")
            restored = await app.expect("connection_restored")
            assert restored == {"type": "connection_restored", "app_id": APP, "server_id": "a"}
            times = [t for t, _ in a.hellos]
            assert 2.5 <= times[1] - times[0] <= 2.5 + MS
            assert 7.25 <= times[2] - times[1] <= 7.25 + MS

    run(main)


def test_all_servers_overloaded_fails_to_app_then_restores(tmp_path: Path) -> None:
    a, b, c = FakeServer("a", 1), FakeServer("b", 1), FakeServer("c", 2)
    for s in (a, b, c):
        s.reject = ("overloaded", 30.0)

    async def main() -> None:
        async with running(tmp_path, [policy(a, b, c)], a, b, c) as h:
            app = await h.app()
            failed = await app.register(APP)
            failed_at = trio.current_time()
            assert failed["type"] == "connection_failed"
            assert failed["reason"] == "exhausted" and failed["fallback"] == "direct"
            # Three servers tried, each once, with at most initial_ms between them.
            assert failed_at <= 2 * 0.5
            assert [len(s.hellos) for s in (a, b, c)] == [1, 1, 1]
            # When the client expects to try again: the first cool-down's end (+ jitter).
            assert 30.0 - failed_at - MS <= failed["retry_after_s"] <= 30.5 - failed_at + MS
            # Background rounds: nobody is contacted before its cool-down ends.
            await trio.sleep(29.99 - failed_at)
            assert [len(s.hellos) for s in (a, b, c)] == [1, 1, 1]
            b.reject = None
            await app.expect("registration_changed")
            restored = await app.expect("connection_restored")
            assert restored["server_id"] == "b"
            for s in (a, b, c):
                times = [t for t, _ in s.hellos]
                assert all(later - earlier >= 30.0 for earlier, later in pairwise(times))
            assert app.log[-1][0] - failed_at <= 30.0 + 60.5  # a background round's bound

    run(main)


def test_fail_to_app_policy_reports_overloaded_without_trying_others(tmp_path: Path) -> None:
    a, b = FakeServer("a", 1), FakeServer("b", 2)
    a.reject = ("overloaded", 10.0)
    doc = policy(a, b, reallocation={"on_overload": "fail_to_app"})

    async def main() -> None:
        async with running(tmp_path, [doc], a, b) as h:
            app = await h.app()
            failed = await app.register(APP)
            assert failed["type"] == "connection_failed" and failed["reason"] == "overloaded"
            await app.quiet(9.9)
            assert b.hellos == [] and len(a.hellos) == 1
            a.reject = None
            await app.expect("registration_changed")
            await app.expect("connection_restored")
            assert a.hellos[1][0] >= 10.0 and b.hellos == []

    run(main)


@pytest.mark.parametrize("reason", ["invalid_credentials", "forbidden", "rate_limited"])
def test_refusal_never_fails_over(tmp_path: Path, reason: str) -> None:
    a, b = FakeServer("a", 1), FakeServer("b", 2)
    a.reject = (reason, None)

    async def main() -> None:
        async with running(tmp_path, [policy(a, b)], a, b) as h:
            app = await h.app()
            failed = await app.register(APP)
            assert failed["type"] == "connection_failed" and failed["reason"] == "rejected"
            await app.quiet(3600)  # one failure per outage, retries in the background
            assert b.connects == []
            times = [t for t, _ in a.hellos]
            assert len(times) > 5
            gaps = [later - earlier for earlier, later in pairwise(times)]
            assert all(g <= 60.0 + 0.5 for g in gaps)  # backoff within max_ms (+ jitter)
            assert gaps[-1] >= 30.0  # and it grew

    run(main)


def test_unsupported_version_moves_on_and_never_says_hello_there_again(tmp_path: Path) -> None:
    a, b = FakeServer("a", 1), FakeServer("b", 2)
    a.reject = ("unsupported_version", 1.0)

    async def main() -> None:
        async with running(tmp_path, [policy(a, b)], a, b) as h:
            app = await h.app()
            registered = await app.register(APP)
            assert registered["type"] == "app_registered" and registered["server_id"] == "b"
            b.reject = ("unsupported_version", None)
            await b.drop()
            failed = await app.expect("connection_failed")
            assert failed["reason"] == "exhausted" and failed["fallback"] == "direct"
            await app.quiet(3600)
            assert len(a.hellos) == 1 and len(b.hellos) == 2  # neither is asked again

    run(main)


def test_lost_session_reconnects_with_full_jitter_backoff(tmp_path: Path) -> None:
    delays = []

    async def one(seed: int) -> None:
        a = FakeServer("a")
        async with running(tmp_path, [policy(a)], a, seed=seed) as h:
            app = await h.app()
            await app.register(APP)
            lost_at = trio.current_time()
            await a.drop()
            while len(a.hellos) < 2:
                await trio.sleep(0.001)
            delays.append(a.hellos[1][0] - lost_at)
            (_, resume) = a.hellos[1]
            assert resume.session == "a-session-000001"
            await app.quiet(1)  # resumed: the app sees nothing

    async def main() -> None:
        for seed in range(40):
            await one(seed)

    run(main)
    assert all(0.0 <= d <= 0.5 + MS for d in delays)  # uniform(0, initial_ms)
    assert min(delays) < 0.15 and max(delays) > 0.35  # and really spread


def test_unreachable_server_backoff_grows_within_bounds(tmp_path: Path) -> None:
    a = FakeServer("a")

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a) as h:
            app = await h.app()
            await app.register(APP)
            await a.drop()
            a.unreachable = True
            messages = await app.collect(1800)
            times = a.connects[1:]
            gaps = [later - earlier for earlier, later in pairwise(times)]
            # The n-th failure cools the server for the backoff bound, then a candidate
            # jitter of at most initial_ms (the first failure was the lost session).
            caps = [min(60.0, 0.5 * 2.0 ** (n + 1)) for n in range(len(gaps))]
            for gap, cap in zip(gaps, caps, strict=True):
                assert cap - MS <= gap <= cap + 0.5 + MS
            assert max(gaps) >= 30.0  # grew to the bound
            assert all(g <= 60.5 + MS for g in gaps)
            assert [m["type"] for m in messages] == ["connection_failed"]  # once per outage
            assert messages[0]["reason"] == "exhausted"

    run(main)


@pytest.mark.parametrize("allowed", [True, False])  # without multi_server: two sessions a moment
def test_return_to_preferred(tmp_path: Path, allowed: bool) -> None:
    a, c = FakeServer("a", 1), FakeServer("c", 2)
    a.reject = ("overloaded", 100.0)
    doc = policy(a, c, multi_server={"allowed": allowed, "max_concurrent": 4 if allowed else 1})

    async def main() -> None:
        async with running(tmp_path, [doc], a, c) as h:
            app = await h.app()
            registered = await app.register(APP)
            served_at = trio.current_time()
            assert registered["server_id"] == "c"
            a.reject = None
            changed = await app.expect("registration_changed")
            assert changed["reason"] == "returned_to_preferred" and changed["server_id"] == "a"
            assert changed["token"] == a.token(APP)
            (probe_at, _) = a.hellos[1]
            assert probe_at == pytest.approx(served_at + 600, abs=MS)
            await app.quiet(5)
            # The old token is withdrawn, then the session closed with bye.
            ((_, unregister),) = c.received_of(Unregister)
            assert unregister.token == registered["token"]
            assert [type(m) for _, m in c.received][-2:] == [Unregister, Bye]
            await a.notify(APP, "n1")
            assert (await app.expect("app_notification"))["id"] == "n1"

    run(main)


def test_return_to_preferred_waits_while_preferred_refuses(tmp_path: Path) -> None:
    a, c = FakeServer("a", 1), FakeServer("c", 2)
    a.reject = ("overloaded", 100.0)

    async def main() -> None:
        async with running(tmp_path, [policy(a, c)], a, c) as h:
            app = await h.app()
            await app.register(APP)
            served_at = trio.current_time()
            a.reject = ("overloaded", 900.0)
            while len(a.hellos) < 2:
                await trio.sleep(1)
            a.reject = None
            changed = await app.expect("registration_changed")
            assert changed["reason"] == "returned_to_preferred"
            _, second, third = (t for t, _ in a.hellos)
            assert second == pytest.approx(served_at + 600, abs=MS)
            assert third >= second + 900  # the refusal's retry_after_s
            assert third <= second + 900 + 600 + MS

    run(main)


def test_without_notify_app_apps_are_not_told_of_failures(tmp_path: Path) -> None:
    a = FakeServer("a")
    doc = policy(a, fallback={"notify_app": False})

    async def main() -> None:
        async with running(tmp_path, [doc], a) as h:
            app = await h.app()
            registered = await app.register(APP)
            a.reject = ("overloaded", 20.0)
            await a.drop()
            await app.quiet(15)  # no connection_failed
            a.reject = None
            await app.quiet(60)  # resumed later: same token, nothing to tell either
            assert a.token(APP) == registered["token"] and len(a.hellos) >= 3
            a.reject = ("overloaded", 20.0)
            await a.drop()
            late = await h.app()  # an app_register is still answered, by connection_failed
            failed = await late.register(OTHER)
            assert failed["type"] == "connection_failed" and failed["app_id"] == OTHER

    run(main)


def test_an_app_first_answered_connection_failed_is_told_its_registration_as_a_change(
    tmp_path: Path,
) -> None:
    a = FakeServer("a")
    a.reject = ("overloaded", 20.0)

    async def main() -> None:
        async with running(tmp_path, [policy(a)], a) as h:
            app = await h.app()
            assert (await app.register(APP))["type"] == "connection_failed"
            a.reject = None
            changed = await app.expect("registration_changed", timeout=120)
            assert (changed["reason"], changed["token"]) == ("reallocated", a.token(APP))
            assert (await app.expect("connection_restored"))["server_id"] == "a"

    run(main)
