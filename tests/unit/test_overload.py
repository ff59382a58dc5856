"""Server overload control: admission at hello, health, shedding, retry_after."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aoi.core.overload import (
    MAX_RETRY_AFTER_S,
    TRIGGERS,
    Load,
    OverloadControl,
    OverloadSettings,
    Refusal,
)

ALTERNATES = ("wss://b.example/aoi", "wss://c.example/aoi")
SETTINGS = OverloadSettings(
    max_sessions=100,
    hello_rate_per_s=10.0,
    hello_burst=20,
    max_loop_lag_ms=500.0,
    max_store_backlog=1000,
    retry_after_s=30.0,
    alternates=ALTERNATES,
    shed=True,
    shed_high_water=1.1,
    shed_rate_per_s=5.0,
)
CALM = Load(sessions=10, loop_lag_ms=1.0, store_backlog=0, draining=False)


def control(seed: int = 1, **changes: Any) -> OverloadControl:
    return OverloadControl(dataclasses.replace(SETTINGS, **changes), random.Random(seed))


def load(**changes: Any) -> Load:
    return dataclasses.replace(CALM, **changes)


def test_a_calm_server_admits() -> None:
    c = control()
    assert c.admit_hello(0.0, CALM) is None
    assert c.status(CALM) == "ok"
    assert c.load_factor(CALM) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("busy", "reason", "status"),
    [
        (load(sessions=100), "max_sessions", "overloaded"),
        (load(loop_lag_ms=500.1), "loop_lag", "overloaded"),
        (load(store_backlog=1001), "store_backlog", "overloaded"),
        (load(store_failing=True), "store_failing", "overloaded"),
        (load(draining=True), "draining", "draining"),
    ],
)
def test_each_trigger_refuses_with_retry_after_and_alternates(
    busy: Load, reason: str, status: str
) -> None:
    c = control()
    refusal = c.admit_hello(0.0, busy)
    assert isinstance(refusal, Refusal)
    assert refusal.reasons == (reason,)
    assert refusal.servers == ALTERNATES
    assert 15.0 <= refusal.retry_after_s <= 45.0
    assert c.status(busy) == status


def test_thresholds_are_exclusive_for_lag_and_backlog() -> None:
    c = control()
    assert c.admit_hello(0.0, load(sessions=99, loop_lag_ms=500.0, store_backlog=1000)) is None


def test_draining_wins_over_overloaded_in_health() -> None:
    c = control()
    both = load(sessions=1000, draining=True)
    assert c.status(both) == "draining"
    assert c.reasons(both) == ("max_sessions", "draining")


def test_hello_bucket_refuses_a_burst_but_health_stays_ok() -> None:
    c = control()
    outcomes = [c.admit_hello(5.0, CALM) for _ in range(25)]
    assert outcomes[:20] == [None] * 20
    refused = outcomes[20]
    assert refused is not None and refused.reasons == ("hello_rate",)
    assert c.status(CALM) == "ok"
    assert c.admit_hello(5.1, CALM) is None  # 10 per second come back


def test_every_reason_is_listed() -> None:
    c = control(hello_burst=1)
    assert c.admit_hello(0.0, CALM) is None
    refusal = c.admit_hello(0.0, load(sessions=100, loop_lag_ms=900.0, store_backlog=5000))
    assert refusal is not None
    assert refusal.reasons == ("max_sessions", "loop_lag", "store_backlog", "hello_rate")


def test_max_sessions_zero_refuses_everybody_and_load_stays_finite() -> None:
    c = control(max_sessions=0)
    assert c.admit_hello(0.0, load(sessions=0)) is not None
    assert c.status(load(sessions=0)) == "overloaded"
    assert c.load_factor(load(sessions=3)) == 3.0


def test_retry_after_grows_with_load_and_is_capped() -> None:
    c = control()
    at_limit = [c.retry_after(load(sessions=100)) for _ in range(500)]
    double = [c.retry_after(load(sessions=200)) for _ in range(500)]
    lagging = [c.retry_after(load(loop_lag_ms=2000.0)) for _ in range(500)]
    assert min(at_limit) >= 15.0 and max(at_limit) <= 45.0
    assert min(double) >= 30.0 and max(double) <= 90.0
    assert min(lagging) >= 60.0 and max(lagging) <= 180.0
    assert len(set(at_limit)) > 400  # jittered: refused clients do not come back together
    huge = [c.retry_after(load(sessions=10**9)) for _ in range(500)]
    assert max(huge) <= MAX_RETRY_AFTER_S and min(huge) >= MAX_RETRY_AFTER_S / 3


def test_retry_after_s_must_be_positive() -> None:
    with pytest.raises(ValueError, match="retry_after_s"):
        OverloadSettings(retry_after_s=0)


def test_shedding_starts_above_high_water_at_a_bounded_rate() -> None:
    c = control()
    assert c.to_shed(0.0, load(sessions=110)) == 0  # 1.1 x 100 is not above high water
    assert c.to_shed(0.0, load(sessions=200)) == 5  # one second's burst
    assert c.to_shed(0.0, load(sessions=200)) == 0
    assert c.to_shed(0.4, load(sessions=200)) == 2
    assert c.to_shed(10.0, load(sessions=112)) == 2  # only those above the watermark
    assert control(shed=False).to_shed(0.0, load(sessions=10_000)) == 0
    assert c.to_shed(20.0, load(sessions=50, draining=True)) == 5  # maintenance: everybody
    assert c.to_shed(30.0, load(sessions=50, loop_lag_ms=5000.0)) == 5  # lag, not sessions


def test_defaults_are_the_documented_ones() -> None:
    s = OverloadSettings()
    assert (s.max_sessions, s.hello_rate_per_s, s.hello_burst) == (10_000, 500.0, 1000)
    assert (s.max_loop_lag_ms, s.max_store_backlog, s.retry_after_s) == (500.0, 20_000, 30.0)
    assert (s.alternates, s.shed, s.shed_high_water, s.shed_rate_per_s) == ((), False, 1.1, 10.0)
    assert set(TRIGGERS) == {
        "max_sessions", "loop_lag", "store_backlog", "store_failing", "draining"
    }  # fmt: skip


# --- properties ------------------------------------------------------------------------

settings_st = st.builds(
    OverloadSettings,
    max_sessions=st.integers(0, 1000),
    hello_rate_per_s=st.floats(0.1, 1000.0),
    hello_burst=st.integers(1, 100),
    max_loop_lag_ms=st.floats(1.0, 2000.0),
    max_store_backlog=st.integers(0, 10_000),
    retry_after_s=st.floats(0.001, MAX_RETRY_AFTER_S),
    alternates=st.just(ALTERNATES),
    shed=st.booleans(),
    shed_high_water=st.floats(0.5, 3.0),
    shed_rate_per_s=st.floats(0.1, 100.0),
)
loads = st.builds(
    Load,
    sessions=st.integers(0, 5000),
    loop_lag_ms=st.floats(0.0, 10_000.0),
    store_backlog=st.integers(0, 50_000),
    draining=st.booleans(),
)
histories = st.lists(st.tuples(st.floats(0.0, 2.0), loads), max_size=200)


@given(settings=settings_st, history=histories, seed=st.integers())
def test_never_admits_at_max_sessions_or_draining(
    settings: OverloadSettings, history: list[tuple[float, Load]], seed: int
) -> None:
    c = OverloadControl(settings, random.Random(seed))
    now = 0.0
    for gap, current in history:
        now += gap
        refusal = c.admit_hello(now, current)
        if current.sessions >= settings.max_sessions or current.draining:
            assert refusal is not None
        if refusal is None:
            assert c.status(current) == "ok"
        else:
            assert refusal.servers == ALTERNATES
            assert 0 < refusal.retry_after_s <= MAX_RETRY_AFTER_S


@given(settings=settings_st, history=histories, seed=st.integers())
def test_admissions_never_exceed_the_hello_bucket(
    settings: OverloadSettings, history: list[tuple[float, Load]], seed: int
) -> None:
    c = OverloadControl(settings, random.Random(seed))
    now = start = 0.0
    admitted = 0
    for gap, current in history:
        now += gap
        admitted += c.admit_hello(now, current) is None
        assert admitted <= settings.hello_burst + settings.hello_rate_per_s * (now - start) + 1e-6


@given(settings=settings_st, current=loads, seed=st.integers())
def test_retry_after_is_positive_jittered_and_capped(
    settings: OverloadSettings, current: Load, seed: int
) -> None:
    c = OverloadControl(settings, random.Random(seed))
    grown = settings.retry_after_s * max(1.0, c.pressure(current))
    base = min(grown, MAX_RETRY_AFTER_S / 1.5)
    wait = c.retry_after(current)
    assert 0 < wait <= MAX_RETRY_AFTER_S
    assert 0.5 * base <= wait <= 1.5 * base


@given(settings=settings_st, history=histories, seed=st.integers())
def test_shedding_never_exceeds_its_rate_nor_the_excess(
    settings: OverloadSettings, history: list[tuple[float, Load]], seed: int
) -> None:
    c = OverloadControl(settings, random.Random(seed))
    burst = max(1, -(-settings.shed_rate_per_s // 1))
    now = start = 0.0
    shed = 0
    for gap, current in history:
        now += gap
        n = c.to_shed(now, current)
        pressure = c.pressure(current)
        if not settings.shed or (pressure <= settings.shed_high_water and not current.draining):
            assert n == 0
        assert 0 <= n <= current.sessions
        shed += n
        assert shed <= burst + settings.shed_rate_per_s * (now - start) + 1e-6
