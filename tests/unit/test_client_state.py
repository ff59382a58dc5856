"""What the AOI Client keeps across restarts."""

from __future__ import annotations

from pathlib import Path

from aoi.client.state import (
    COMPACT_MIN,
    EXPIRY_MARGIN_S,
    UNDATED_KEEP_S,
    SeenIds,
    State,
    notification_expiry,
)

NOW = 1_780_000_000.0  # seconds since the epoch: the tests' wall clock
DAY = 86_400.0


def test_an_acked_id_is_kept_until_its_notification_expires_however_many_follow() -> None:
    seen = SeenIds(None, limit=1000)
    seen.add("app", "old", NOW + 7 * DAY, NOW)  # a notification with a week to live
    for n in range(3000):  # three bounds' worth of short-lived ones after it, 1 s apart
        now = NOW + n
        seen.add("app", f"n{n}", now + 60, now)
    later = NOW + 3000
    assert seen.contains("app", "old", later)  # not pushed out by the 3000 newer ids
    assert seen.contains("app", "n2999", later) and not seen.contains("other", "old", later)
    expired = NOW + 7 * DAY + EXPIRY_MARGIN_S
    assert not seen.contains("app", "old", expired + 1)  # forgotten once expired
    assert seen.contains("app", "old", expired - 1)  # the margin covers a lagging server clock


def test_at_the_bound_the_id_that_expires_first_is_forgotten(tmp_path: Path) -> None:
    seen = SeenIds(tmp_path, limit=3)
    seen.add("app", "week", NOW + 7 * DAY, NOW)
    seen.add("app", "hour", NOW + 3600, NOW)
    seen.add("app", "day", NOW + DAY, NOW)
    seen.add("app", "month", NOW + 28 * DAY, NOW + 1)  # over the bound: "hour" goes
    assert [seen.contains("app", i, NOW + 2) for i in ("week", "hour", "day", "month")] == [
        True, False, True, True,
    ]  # fmt: skip
    again = SeenIds(tmp_path, limit=3)  # the same after a restart
    assert [again.contains("app", i, NOW + 2) for i in ("week", "hour", "day", "month")] == [
        True, False, True, True,
    ]  # fmt: skip


def test_seen_ids_survive_a_restart_and_the_file_is_compacted(tmp_path: Path) -> None:
    seen = SeenIds(tmp_path, limit=100_000)
    for n in range(5 * COMPACT_MIN):
        now = NOW + n
        seen.add("app", f"n{n}", now + 100, now)  # at most 100 live at once
    seen.add("app", "keep", NOW + DAY, NOW + 5 * COMPACT_MIN)
    seen.add("app", "keep", NOW + DAY, NOW + 5 * COMPACT_MIN)  # already there: no change
    lines = (tmp_path / "app.log").read_text().splitlines()
    assert len(lines) <= COMPACT_MIN  # rewritten with the live ids as it grows
    later = NOW + 5 * COMPACT_MIN
    again = SeenIds(tmp_path, limit=100_000)
    assert again.contains("app", "keep", later) and again.contains(
        "app", f"n{5 * COMPACT_MIN - 1}", later
    )
    assert not again.contains("app", "n0", later)  # expired
    again.forget("app")
    assert not (tmp_path / "app.log").exists()
    assert not again.contains("app", "keep", later)


def test_an_expired_id_is_not_recorded() -> None:
    seen = SeenIds(None)
    seen.add("app", "gone", NOW - EXPIRY_MARGIN_S - 1, NOW)
    assert not seen.contains("app", "gone", NOW)


def test_a_file_of_ids_without_expiry_keeps_them_for_the_longest_ttl(tmp_path: Path) -> None:
    (tmp_path / "app.log").write_text("n1\nn2\n")  # as written before ids had an expiry
    seen = SeenIds(tmp_path)
    assert seen.contains("app", "n1", NOW) and seen.contains("app", "n2", NOW + UNDATED_KEEP_S - 1)
    assert not SeenIds(tmp_path).contains("app", "n1", NOW + UNDATED_KEEP_S + 1)


def test_the_expiry_is_created_at_plus_ttl() -> None:
    assert notification_expiry("2026-03-01T12:00:00Z", 3600, NOW) == 1772366400.0 + 3600
    assert notification_expiry("2026-03-01T12:00:00.250+01:00", 10, NOW) == 1772362800.25 + 10
    assert notification_expiry("not a date", 10, NOW) == NOW + 10  # later, never earlier


def test_state_round_trip(tmp_path: Path) -> None:
    state = State(tmp_path)
    state.save_session("op.example/a", "a-session-000001")
    state.save_registration("com.example.chat", {"provider": None})
    state.add_stale("op.example/a", "t" * 22, "com.example.mail")
    state.save_policy("op.example", {"provider": "op.example"})
    state.seen.add("com.example.chat", "n1", NOW + 60, NOW)
    again = State(tmp_path)
    assert again.sessions == {"op.example/a": "a-session-000001"}
    assert again.registrations == {"com.example.chat": {"provider": None}}
    assert again.stale == {"op.example/a": {"t" * 22: "com.example.mail"}}
    assert again.policy("op.example") == {"provider": "op.example"}
    assert again.seen.contains("com.example.chat", "n1", NOW)
    again.drop_stale("op.example/a", token="t" * 22)
    again.save_session("op.example/a", None)
    again.save_registration("com.example.chat", None)
    third = State(tmp_path)
    assert (third.sessions, third.registrations, third.stale) == ({}, {}, {})


def test_unreadable_state_starts_empty(tmp_path: Path) -> None:
    (tmp_path / "sessions.json").write_text("{not json")
    assert State(tmp_path).sessions == {}


def test_memory_only() -> None:
    state = State(None)
    state.save_session("k", "s" * 16)
    state.seen.add("app", "n1", NOW + 60, NOW)
    assert state.sessions == {"k": "s" * 16} and state.seen.contains("app", "n1", NOW)
