"""Server selection and reallocation: examples, then properties over random histories."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aoi.core.messages import FailReason
from aoi.core.policy import Action, Backoff, Reallocation, ServerEntry
from aoi.core.reallocation import (
    Connect,
    Fail,
    Outcome,
    Reallocator,
    Served,
    server_order,
)

A = ServerEntry("a", "wss://a.example/aoi", 1, 3)
B = ServerEntry("b", "wss://b.example/aoi", 1, 1)
C = ServerEntry("c", "wss://c.example/aoi", 2)
D = ServerEntry("d", "wss://d.example/aoi", 3)
BACKOFF = Backoff(initial_ms=500, max_ms=60_000, multiplier=2.0)


def policy(
    *, on_overload: Action = Action.NEXT_SERVER, max_tried: int = 3, back: float = 600
) -> Reallocation:
    return Reallocation(on_overload, Action.NEXT_SERVER, max_tried, BACKOFF, back)


def realloc(seed: int = 1, **kwargs: object) -> Reallocator:
    return Reallocator(policy(**kwargs), [A, B, C, D], "priority_weighted", random.Random(seed))  # type: ignore[arg-type]


def test_order_is_by_priority_then_weighted() -> None:
    rng = random.Random(7)
    firsts = [server_order([A, B, C], "priority_weighted", rng)[0].id for _ in range(4000)]
    assert set(firsts) == {"a", "b"}
    assert 0.70 < firsts.count("a") / len(firsts) < 0.80  # weight 3 : 1
    assert all(server_order([C, A, B], "priority_weighted", rng)[2] == C for _ in range(50))
    assert server_order([C, A, B], "ordered", rng) == [C, A, B]


def test_overload_moves_to_next_candidate_with_small_jitter() -> None:
    r = realloc()
    first = r.start(100.0)
    assert first.at == 100.0 and first.server.priority == 1
    nxt = r.report(first.server.id, Outcome.OVERLOADED, 100.0, retry_after_s=30)
    assert isinstance(nxt, Connect)
    assert nxt.server != first.server and nxt.server.priority == 1
    assert 100.0 <= nxt.at <= 100.5
    assert r.cool_until[first.server.id] == 130.0  # retry_after_s to the millisecond


def test_exhaustion_fails_to_app_then_retries_after_cool_down() -> None:
    r = realloc(max_tried=3)
    decision: Connect | Served | Fail = r.start(0.0)
    seen = []
    for _ in range(3):
        assert isinstance(decision, Connect)
        seen.append(decision.server.id)
        decision = r.report(decision.server.id, Outcome.OVERLOADED, decision.at, 10.0)
    assert isinstance(decision, Fail)
    assert decision.reason is FailReason.EXHAUSTED and decision.notify
    assert len(set(seen)) == 3 and "d" not in seen  # the policy's first three, in order
    assert decision.then.at >= r.cool_until.get(decision.then.server.id, 0.0)


def test_fail_to_app_policy_does_not_try_other_servers() -> None:
    r = realloc(on_overload=Action.FAIL_TO_APP)
    first = r.start(0.0)
    decision = r.report(first.server.id, Outcome.OVERLOADED, 0.0, retry_after_s=5)
    assert isinstance(decision, Fail)
    assert decision.reason is FailReason.OVERLOADED and decision.retry_after_s == 5
    assert decision.then.server == first.server and decision.then.at >= 5.0


def test_credential_refusal_never_fails_over() -> None:
    r = realloc()
    first = r.start(0.0)
    decision = r.report(first.server.id, Outcome.REFUSED, 0.0)
    assert isinstance(decision, Fail) and decision.reason is FailReason.REJECTED
    again = r.report(first.server.id, Outcome.REFUSED, decision.then.at)
    assert isinstance(again, Fail) and not again.notify
    assert again.then.server == first.server


def test_restored_and_moved_after_failure() -> None:
    r = realloc()
    first = r.start(0.0)
    r.report(first.server.id, Outcome.ACCEPTED, 0.0)
    lost = r.report(first.server.id, Outcome.LOST, 10.0)
    assert isinstance(lost, Connect) and lost.server == first.server
    assert 10.0 <= lost.at <= 10.5  # first reconnect: full jitter within initial_ms
    failed = r.report(first.server.id, Outcome.OVERLOADED, lost.at, 60)
    assert isinstance(failed, Connect)
    served = r.report(failed.server.id, Outcome.ACCEPTED, failed.at)
    assert served == Served(failed.server, False, first.server.id, None)


def test_return_to_preferred() -> None:
    r = Reallocator(policy(back=600), [A, C], "priority_weighted", random.Random(3))
    r.start(0.0)
    to_c = r.report("a", Outcome.OVERLOADED, 0.0, retry_after_s=100)
    assert isinstance(to_c, Connect) and to_c.server == C
    served = r.report("c", Outcome.ACCEPTED, 1.0)
    assert isinstance(served, Served) and served.return_at == 601.0
    assert r.probe(601.0) == Connect(A, 601.0)
    assert r.probe_failed("a", 601.0, retry_after_s=50) == 1201.0
    assert r.probe(602.0) is None  # a is cooling
    back = r.report("a", Outcome.ACCEPTED, 1201.0)
    assert back == Served(A, False, "c", None)


def test_after_a_loss_one_failed_reconnection_counts_the_server_as_tried() -> None:
    r = Reallocator(policy(back=600), [A, C], "priority_weighted", random.Random(3))
    r.report(r.start(0.0).server.id, Outcome.ACCEPTED, 0.0)
    lost = r.report("a", Outcome.LOST, 10.0)
    assert isinstance(lost, Connect) and lost.server == A
    moved = r.report("a", Outcome.UNREACHABLE, lost.at)  # on_unreachable: next_server
    assert isinstance(moved, Connect) and moved.server == C


def test_return_to_preferred_after_0_s_means_never() -> None:
    r = Reallocator(policy(back=0), [A, C], "priority_weighted", random.Random(3))
    r.start(0.0)
    r.report("a", Outcome.OVERLOADED, 0.0, retry_after_s=100)
    served = r.report("c", Outcome.ACCEPTED, 1.0)
    assert isinstance(served, Served) and served.return_at is None


@pytest.mark.parametrize("attempt", range(0, 40))
def test_backoff_bounds(attempt: int) -> None:
    cap = BACKOFF.cap_s(attempt)
    assert 0.5 <= cap <= 60.0
    assert cap == min(60.0, 0.5 * 2**attempt)
    assert BACKOFF.delay_s(attempt, 0.0) == 0.0
    assert BACKOFF.delay_s(attempt, 0.999) <= cap


outcomes = st.sampled_from(list(Outcome))
steps = st.lists(st.tuples(outcomes, st.none() | st.floats(0, 3600), st.floats(0, 5)), max_size=40)


@settings(max_examples=400)
@given(st.integers(0, 2**32), st.integers(1, 4), st.sampled_from(list(Action)), steps)
def test_reallocation_properties(
    seed: int,
    max_tried: int,
    on_overload: Action,
    history: list[tuple[Outcome, float | None, float]],
) -> None:
    r = realloc(seed, max_tried=max_tried, on_overload=on_overload)
    decision: Connect | Served | Fail = r.start(0.0)
    now, served, tried = 0.0, None, set()
    notified = False
    for outcome, retry_after, wait in history:
        target = decision.then if isinstance(decision, Fail) else decision
        if isinstance(target, Connect):
            # Never a server in cool-down; refusals' retry_after honoured.
            assert target.at >= r.cool_until.get(target.server.id, float("-inf"))
            now = max(now, target.at)
            server = target.server
        else:
            server = target.server
        now += wait
        if outcome is Outcome.LOST and served is None:
            outcome = Outcome.UNREACHABLE
        if outcome in (Outcome.LOST, Outcome.REDIRECTED) and served is None:
            continue
        decision = r.report(server.id, outcome, now, retry_after)
        if isinstance(decision, Connect):
            tried.add(server.id)
            assert decision.at >= now
            # Backoff within policy bounds, or just after the chosen server's cool-down.
            cool_end = r.cool_until.get(decision.server.id, now) + BACKOFF.initial_ms / 1000
            assert decision.at <= max(now + BACKOFF.max_ms / 1000, cool_end)
            if outcome in (Outcome.OVERLOADED, Outcome.REDIRECTED, Outcome.UNREACHABLE):
                assert len(set(r.tried)) < max_tried
        if isinstance(decision, Fail):
            assert decision.notify is not notified
            notified = True
            assert len(r.tried) == 0  # a new background round starts
            if outcome is Outcome.REFUSED or (
                on_overload is Action.FAIL_TO_APP
                and outcome in (Outcome.OVERLOADED, Outcome.REDIRECTED)
            ):
                assert decision.then.server.id == server.id
        if isinstance(decision, Served):
            assert decision.restored is notified
            notified = False
            served = decision.server
        elif outcome is not Outcome.ACCEPTED:
            served = None
        if retry_after is not None and outcome in (
            Outcome.OVERLOADED,
            Outcome.REDIRECTED,
            Outcome.REFUSED,
        ):
            assert r.cool_until[server.id] >= now + retry_after


def test_unsupported_version_never_tries_that_server_again() -> None:
    r = Reallocator(policy(back=600), [A, C], "priority_weighted", random.Random(3))
    first = r.start(0.0)
    assert first.server == A
    moved = r.report("a", Outcome.UNSUPPORTED, 0.0, retry_after_s=5)
    assert isinstance(moved, Connect) and moved.server == C  # another may speak it
    assert r.cool_until["a"] == math.inf  # retry_after_s does not shorten it
    r.report("c", Outcome.ACCEPTED, moved.at)
    assert r.probe(1e9) is None  # no return to a preferred server that refused the version
    failed = r.report("c", Outcome.UNSUPPORTED, 2.0)
    assert isinstance(failed, Fail) and failed.reason is FailReason.EXHAUSTED
    assert failed.then.at == math.inf  # the apps are told, and neither server is tried again
