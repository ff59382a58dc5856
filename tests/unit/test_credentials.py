"""Authentication of AOI Clients and server apps, and the limit on failed hellos."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aoi.server.config import parse_config
from aoi.server.credentials import (
    ClientCredentials,
    FailedHelloLimiter,
    ServerApp,
    ServerAppKeys,
    digest,
)

CONFIG = parse_config(
    {
        "clients": [
            {"client_id": "device-1", "credential": "s3cret"},
            {"client_id": "device-2", "credential_sha256": digest("other"), "provider": "op"},
        ],
        "server_apps": [
            {"name": "chat", "key": "chat-key", "app_ids": ["com.example.chat"], "burst": 3},
            {
                "name": "mail",
                "key_sha256": digest("mail-key").upper(),
                "app_ids": ["com.example.mail", "com.example.cal"],
                "rate_per_s": 0.5,
                "burst": 1,
            },
        ],
    }
)


def test_digest_is_sha256_hex_of_utf8() -> None:
    assert digest("é") == hashlib.sha256("é".encode()).hexdigest()


def test_client_credentials_check() -> None:
    clients = ClientCredentials.from_config(CONFIG.clients)
    assert clients.check("device-1", "s3cret")
    assert clients.check("device-2", "other")
    assert not clients.check("device-1", "other")
    assert not clients.check("device-1", "")
    assert not clients.check("nobody", "s3cret")
    assert "device-1" in clients and "nobody" not in clients and len(clients) == 2
    assert clients.provider_of("device-2") == "op"
    assert clients.provider_of("device-1") is None


def test_unknown_ids_cost_the_same_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real: Callable[[bytes, bytes], bool] = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    clients = ClientCredentials.from_config(CONFIG.clients)
    clients.check("device-1", "wrong")
    clients.check("nobody", "wrong")
    assert calls == [(32, 32), (32, 32)]


def test_server_app_keys_identify_by_digest() -> None:
    keys = ServerAppKeys.from_config(CONFIG.server_apps)
    chat = keys.identify("chat-key")
    assert chat == ServerApp("chat", frozenset({"com.example.chat"}), 100.0, 3)
    mail = keys.identify("mail-key")
    assert mail is not None and mail.app_ids == {"com.example.mail", "com.example.cal"}
    assert keys.identify("mail-key ") is None
    assert keys.identify(digest("chat-key")) is None  # the digest is not the key


def test_server_app_rate_limit() -> None:
    keys = ServerAppKeys.from_config(CONFIG.server_apps)
    assert [keys.take("chat", 7.0) for _ in range(3)] == [None, None, None]
    assert keys.take("chat", 7.0) == pytest.approx(0.01)  # 100 per second
    assert keys.take("mail", 7.0) is None
    assert keys.take("mail", 7.0) == pytest.approx(2.0)  # apps have their own buckets
    assert keys.take("mail", 9.0) is None
    with pytest.raises(KeyError):
        keys.take("nobody", 0.0)


def test_failed_hellos_block_a_client_id_for_the_rest_of_the_window() -> None:
    limiter = FailedHelloLimiter(limit=3, window_s=60.0)
    for t in (0.0, 10.0, 20.0):
        assert limiter.blocked("device-1", f"10.0.0.{t:.0f}", t) is None
        limiter.failed("device-1", f"10.0.0.{t:.0f}", t)
    assert limiter.blocked("device-1", "10.9.9.9", 30.0) == pytest.approx(30.0)
    assert limiter.blocked("device-2", "10.9.9.9", 30.0) is None
    assert limiter.blocked("device-1", "10.9.9.9", 60.0) is None  # the first one left


def test_failed_hellos_block_a_source_across_client_ids() -> None:
    limiter = FailedHelloLimiter(limit=3, window_s=60.0)
    for n in range(3):
        limiter.failed(f"guess-{n}", "192.0.2.7", float(n))
    assert limiter.blocked("device-1", "192.0.2.7", 5.0) == pytest.approx(55.0)
    assert limiter.blocked("device-1", "192.0.2.8", 5.0) is None


def test_success_forgives_the_client_id_but_not_the_source() -> None:
    limiter = FailedHelloLimiter(limit=2, window_s=60.0)
    limiter.failed("device-1", "192.0.2.7", 0.0)
    limiter.failed("device-1", "192.0.2.7", 1.0)
    limiter.succeeded("device-1", "192.0.2.7")
    assert limiter.blocked("device-1", "192.0.2.8", 2.0) is None
    assert limiter.blocked("device-9", "192.0.2.7", 2.0) == pytest.approx(58.0)


def test_memory_is_bounded() -> None:
    limiter = FailedHelloLimiter(limit=5, window_s=60.0, max_keys=100)
    for n in range(1000):
        limiter.failed(f"c{n}", f"s{n}", 0.0)
    assert len(limiter) == 100
    limiter.failed("late", "late", 61.0)  # everything else left the window
    assert len(limiter) == 2


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FailedHelloLimiter(limit=0, window_s=60.0)


events = st.lists(
    st.tuples(
        st.floats(0.0, 30.0),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["s1", "s2"]),
        st.sampled_from(["failed", "succeeded", "blocked"]),
    ),
    max_size=150,
)


@given(limit=st.integers(1, 6), window=st.floats(1.0, 100.0), history=events)
def test_blocked_matches_a_model_of_the_window(
    limit: int, window: float, history: list[tuple[float, str, str, str]]
) -> None:
    limiter = FailedHelloLimiter(limit, window)
    model: dict[tuple[str, str], list[float]] = {}
    now = 0.0
    for gap, client_id, source, action in history:
        now += gap
        keys = [("client", client_id), ("source", source)]
        if action == "failed":
            limiter.failed(client_id, source, now)
            for key in keys:
                model.setdefault(key, []).append(now)
        elif action == "succeeded":
            limiter.succeeded(client_id, source)
            model.pop(("client", client_id), None)
        else:
            recent = [[t for t in model.get(key, []) if t > now - window] for key in keys]
            expect_blocked = any(len(times) >= limit for times in recent)
            wait = limiter.blocked(client_id, source, now)
            assert (wait is not None) == expect_blocked
            if wait is not None:
                assert 0 < wait <= window
