"""What the AOI Client keeps across restarts."""

from __future__ import annotations

from pathlib import Path

from aoi.client.state import SeenIds, State


def test_seen_ids_are_bounded_and_survive_a_restart(tmp_path: Path) -> None:
    seen = SeenIds(tmp_path, limit=100)
    for n in range(350):
        seen.add("app", f"n{n}")
    seen.add("app", "n349")  # already there: no change
    assert ("app", "n349") in seen and ("app", "n250") in seen
    assert ("app", "n249") not in seen  # only the newest 100 are kept
    assert ("other", "n349") not in seen  # per app
    lines = (tmp_path / "app.log").read_text().splitlines()
    assert len(lines) < 200  # compacted as it grows
    again = SeenIds(tmp_path, limit=100)
    assert ("app", "n349") in again and ("app", "n250") in again
    assert ("app", "n249") not in again
    again.forget("app")
    assert not (tmp_path / "app.log").exists()
    assert ("app", "n349") not in again


def test_state_round_trip(tmp_path: Path) -> None:
    state = State(tmp_path)
    state.save_session("op.example/a", "a-session-000001")
    state.save_registration("com.example.chat", {"provider": None})
    state.add_stale("op.example/a", "t" * 22, "com.example.mail")
    state.save_policy("op.example", {"provider": "op.example"})
    state.seen.add("com.example.chat", "n1")
    again = State(tmp_path)
    assert again.sessions == {"op.example/a": "a-session-000001"}
    assert again.registrations == {"com.example.chat": {"provider": None}}
    assert again.stale == {"op.example/a": {"t" * 22: "com.example.mail"}}
    assert again.policy("op.example") == {"provider": "op.example"}
    assert ("com.example.chat", "n1") in again.seen
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
    state.seen.add("app", "n1")
    assert state.sessions == {"k": "s" * 16} and ("app", "n1") in state.seen
