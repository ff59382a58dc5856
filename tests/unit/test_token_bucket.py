"""The token bucket: examples, then properties over random histories in virtual time."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aoi.core.token_bucket import TokenBucket


def test_starts_full_and_refills_at_rate() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=3)
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after(10.0) == pytest.approx(0.5)
    assert not bucket.take(10.4)
    assert bucket.take(10.5)
    assert bucket.tokens(100.0) == 3.0  # never more than burst, however long the pause


def test_waiting_exactly_retry_after_is_enough() -> None:
    bucket = TokenBucket(rate_per_s=3.0, burst=1)
    now = 0.1
    for _ in range(1000):
        assert bucket.take(now)
        now += bucket.retry_after(now)


def test_retry_after_is_zero_when_tokens_are_there_and_inf_beyond_burst() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=5)
    assert bucket.retry_after(0.0, 5) == 0.0
    assert bucket.retry_after(0.0, 6) == math.inf
    assert bucket.take(0.0, 4)
    assert bucket.retry_after(0.0, 3) == pytest.approx(2.0)


def test_take_up_to_grants_whole_tokens_only() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=10)
    assert bucket.take_up_to(0.0, 4) == 4
    assert bucket.take_up_to(0.0, 100) == 6
    assert bucket.take_up_to(0.5, 100) == 0
    assert bucket.take_up_to(1.0, 100) == 1


def test_a_clock_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=1)
    assert bucket.take(100.0)
    assert not bucket.take(50.0)
    assert not bucket.take(100.5)
    assert bucket.take(101.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (math.inf, 1), (1, 0), (1, math.nan)])
def test_nonsense_settings_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenBucket(rate, burst)


rates = st.floats(min_value=0.01, max_value=1000.0)
bursts = st.integers(min_value=1, max_value=1000)
steps = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=5.0), st.integers(min_value=1, max_value=5)),
    max_size=300,
)


@given(rate=rates, burst=bursts, history=steps)
def test_never_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, history: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(rate, burst)
    now = start = 1000.0
    spent = 0
    for gap, n in history:
        now += gap
        if bucket.take(now, n):
            spent += n
        assert 0.0 <= bucket.tokens(now) <= burst
        assert spent <= burst + rate * (now - start) + 1e-6 * (1 + spent)


@given(rate=rates, burst=bursts, history=steps)
def test_retry_after_is_when_the_tokens_are_there(
    rate: float, burst: int, history: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(rate, burst)
    now = 0.0
    for gap, n in history:
        now += gap
        wait = bucket.retry_after(now, n)
        if n > burst:
            assert wait == math.inf
            continue
        assert wait >= 0.0
        if wait > 0:
            assert bucket.tokens(now + wait * 0.99) < n  # not there any earlier
        assert bucket.take(now + wait, n)
        now += wait
