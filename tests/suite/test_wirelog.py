"""The wire log keeps secrets out of every report."""

from __future__ import annotations

import json
from pathlib import Path

from conformance.ixit import load_ixit
from conformance.wirelog import REDACTED, WireLog

EXAMPLE = Path(__file__).resolve().parents[2] / "conformance" / "ixit.example.toml"


def test_credentials_in_frames_are_redacted() -> None:
    log = WireLog()
    hello = {"type": "hello", "version": 1, "client_id": "dev-1", "credential": "s3cret-pass"}
    log.frame("aoi2 A#1", "->", json.dumps(hello))
    text = log.render()
    assert "s3cret-pass" not in text
    assert f'"credential": "{REDACTED}"' in text
    assert "dev-1" in text


def test_authorization_headers_are_redacted() -> None:
    log = WireLog()
    log.add("aoi3", "->", "POST /v1/push/x\nAuthorization: Bearer sk_live_123\nContent-Type: a/b")
    text = log.render()
    assert "sk_live_123" not in text
    assert f"Authorization: Bearer {REDACTED}" in text


def test_known_secrets_are_redacted_anywhere() -> None:
    log = WireLog(secrets=["hunter2-key"])
    log.add("aoi3", "<-", '{"detail": "bad key hunter2-key"}')
    log.frame("aoi2 A#1", "<-", "not json hunter2-key")
    assert "hunter2-key" not in log.render()


def test_entries_are_timestamped_and_ordered() -> None:
    log = WireLog()
    log.add("aoi2 A#1", "->", "first")
    log.add("aoi2 A#1", "<-", "second")
    entries = log.entries()
    assert [e.text for e in entries] == ["first", "second"]
    assert entries[0].elapsed <= entries[1].elapsed
    assert log.render().splitlines()[0][2] == ":"  # HH:MM:SS.mmm


def test_binary_and_huge_frames_are_summarised() -> None:
    log = WireLog()
    log.frame("aoi2 A#1", "->", b"\x00\xff")
    log.frame("aoi2 A#1", "->", '{"type": "ping", "pad": "' + "x" * 70000 + '"}')
    text = log.render()
    assert "<binary 2 bytes> 00ff" in text
    assert len(text) < 5000


def test_secrets_never_show_in_reprs() -> None:
    ixit = load_ixit(EXAMPLE)
    shown = repr(ixit)
    assert ixit.secrets()
    assert not [s for s in ixit.secrets() if s in shown]
    assert repr(ixit.client("A").credential) == "'***'"
    assert json.dumps(ixit.client("A").credential) == json.dumps(str(ixit.client("A").credential))
