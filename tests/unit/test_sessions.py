"""The AOI-2 session state machines, pumped against each other without sockets."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aoi.core.client_session import ClientSession
from aoi.core.codec import Codec
from aoi.core.errors import CloseCode, LocalProtocolError
from aoi.core.messages import (
    Ack,
    Bye,
    Error,
    Hello,
    Limits,
    Notify,
    Ping,
    Pong,
    Redirect,
    Register,
    Registered,
    Reject,
    RejectReason,
    Welcome,
)
from aoi.core.server_session import ServerSession
from aoi.core.session import Closed, Session, State

CODEC = Codec.from_contract("aoi2")
TOKEN = "T" * 22
WELCOME = Welcome(server_id="a", session="S" * 22, keepalive_s=30, limits=Limits(4096, 16))
NOTIFY = Notify(
    id="n1", token=TOKEN, app_id="com.example.chat", payload="hi", priority="normal",
    ttl_s=60, created_at="2026-11-25T12:00:00Z",
)  # fmt: skip


def pump(src: Session, dst: Session, now: float) -> list[object]:
    events: list[object] = []
    for frame in src.outgoing():
        events += dst.receive(frame, now)
    return events


def established(now: float = 0.0) -> tuple[ClientSession, ServerSession]:
    client, server = ClientSession(CODEC, now), ServerSession(CODEC, now)
    client.send(Hello(version=1, client_id="dev-1", credential="pw"), now)
    assert pump(client, server, now) == [Hello(version=1, client_id="dev-1", credential="pw")]
    assert server.state is State.AUTHENTICATING
    server.send(WELCOME, now)
    assert pump(server, client, now) == [WELCOME]
    assert client.state is server.state is State.ESTABLISHED
    return client, server


def test_registration_delivery_and_ack() -> None:
    client, server = established()
    req = client.next_req()
    client.send(Register(req=req, app_id="com.example.chat"), 1)
    assert req in client.pending
    assert pump(client, server, 1) == [Register(req=req, app_id="com.example.chat")]
    server.send(
        Registered(
            req=req, app_id="com.example.chat", token=TOKEN, endpoint="https://a/v1/push/" + TOKEN
        ),
        1,
    )
    pump(server, client, 1)
    assert client.pending == {}
    server.send(NOTIFY, 2)
    assert pump(server, client, 2) == [NOTIFY]
    client.send(Ack(ids=("n1",)), 3)
    assert pump(client, server, 3) == [Ack(ids=("n1",))]


def test_ping_is_answered_by_the_session() -> None:
    client, server = established()
    client.send(Ping(ts=5.0), 5)
    pump(client, server, 5)
    assert pump(server, client, 5) == [Pong(ts=5.0)]


def test_message_before_hello_is_fatal() -> None:
    server = ServerSession(CODEC, 0)
    events = server.receive('{"type": "register", "req": 1, "app_id": "a"}', 0)
    assert events == [Closed(CloseCode.PROTOCOL_ERROR, events[0].reason)]  # type: ignore[union-attr]
    (frame,) = server.outgoing()
    assert '"code":"unexpected_message"' in frame and '"fatal":true' in frame


def test_bad_frame_after_welcome_keeps_the_session() -> None:
    _, server = established()
    assert server.receive(b"{oops", 1) == []
    (frame,) = server.outgoing()
    assert '"code":"malformed_frame"' in frame and '"fatal":false' in frame
    assert server.state is State.ESTABLISHED


def test_oversized_frame_closes_with_4413() -> None:
    _, server = established()
    (closed,) = server.receive("x" * 70_000, 1)
    assert closed == Closed(CloseCode.FRAME_TOO_LARGE, closed.reason)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (RejectReason.OVERLOADED, CloseCode.OVERLOADED),
        (RejectReason.INVALID_CREDENTIALS, CloseCode.AUTH_FAILED),
        (RejectReason.FORBIDDEN, CloseCode.AUTH_FAILED),
        (RejectReason.RATE_LIMITED, CloseCode.RATE_LIMITED),
        (RejectReason.UNSUPPORTED_VERSION, CloseCode.UNSUPPORTED_VERSION),
    ],
)
def test_reject_closes_both_sides_with_its_code(reason: RejectReason, code: CloseCode) -> None:
    client, server = ClientSession(CODEC, 0), ServerSession(CODEC, 0)
    client.send(Hello(version=1, client_id="c", credential="x"), 0)
    pump(client, server, 0)
    server.send(Reject(reason=reason, retry_after_s=2.5), 0)
    assert server.closed is not None and server.closed.code is code
    events = pump(server, client, 0)
    assert events[0] == Reject(reason=reason, retry_after_s=2.5)
    assert client.closed is not None and client.closed.code is code


def test_an_error_answering_hello_ends_the_session_at_both_ends() -> None:
    client, server = ClientSession(CODEC, 0), ServerSession(CODEC, 0)
    client.send(Hello(version=1, client_id="c", credential="x"), 0)
    pump(client, server, 0)
    server.send(Error(code="invalid_message", detail="hello: no", fatal=True), 0)
    assert server.state is State.CLOSED
    events = pump(server, client, 0)
    assert client.state is State.CLOSED
    assert events[-1] == Closed(CloseCode.PROTOCOL_ERROR, "error")


def test_redirect_closes_established_session() -> None:
    client, server = established()
    server.send(Redirect(reason="overloaded", retry_after_s=30), 1)
    pump(server, client, 1)
    assert client.state is server.state is State.CLOSED
    assert client.closed is not None and client.closed.code is CloseCode.OVERLOADED


def test_server_cannot_notify_before_welcome() -> None:
    server = ServerSession(CODEC, 0)
    with pytest.raises(LocalProtocolError):
        server.send(NOTIFY, 0)


def test_handshake_timeout() -> None:
    server = ServerSession(CODEC, 100.0, handshake_timeout_s=10)
    assert server.deadline() == 110.0
    assert server.tick(109.999) == []
    (closed,) = server.tick(110.0)
    assert closed.code is CloseCode.TIMEOUT  # type: ignore[union-attr]


def test_keepalive_rules() -> None:
    client, server = established(0)
    assert client.deadline() == 30  # the client pings after keepalive_s without sending
    assert client.tick(30) == []
    pump(client, server, 30)
    pump(server, client, 30)  # pong
    assert server.deadline() == 90  # twice keepalive after the last frame received
    (closed,) = server.tick(90)
    assert closed.code is CloseCode.TIMEOUT  # type: ignore[union-attr]


def test_client_declares_silent_server_dead() -> None:
    client, _ = established(0)
    client.tick(30)  # ping, never answered
    client.outgoing()
    client.tick(45)
    (closed,) = client.tick(60)
    assert closed.code is CloseCode.TIMEOUT  # type: ignore[union-attr]


def test_bye_from_client_is_normal_close() -> None:
    client, server = established()
    client.send(Bye(reason="app closed"), 1)
    events = pump(client, server, 1)
    assert events[-1] == Closed(CloseCode.NORMAL, "bye")


frames = st.sampled_from(
    [
        '{"type":"hello","version":1,"client_id":"c","credential":"x"}',
        '{"type":"register","req":1,"app_id":"a"}',
        '{"type":"unregister","req":2,"token":"' + TOKEN + '"}',
        '{"type":"ack","ids":["n1"]}',
        '{"type":"nack","id":"n1","reason":"gone"}',
        '{"type":"ping"}',
        '{"type":"pong","ts":1}',
        '{"type":"bye"}',
        '{"type":"welcome"}',
        '{"type":"error","code":"x","detail":"","fatal":true}',
        "not json",
        "[]",
        '{"type":"nope"}',
    ]
) | st.text(max_size=30)
replies = st.sampled_from([WELCOME, NOTIFY, Reject(reason="overloaded"), Pong(), Bye()])


@settings(max_examples=300)
@given(st.lists(st.tuples(frames, replies, st.floats(0, 100)), max_size=20))
def test_random_sequences_raise_only_protocol_errors(
    steps: list[tuple[str, object, float]],
) -> None:
    server = ServerSession(CODEC, 0)
    now = 0.0
    for frame, reply, dt in steps:
        now += dt
        events = server.receive(frame, now) + server.tick(now)
        assert all(isinstance(e, Closed) or hasattr(e, "type") for e in events)
        with contextlib.suppress(LocalProtocolError):
            server.send(reply, now)  # type: ignore[arg-type]
        for out in server.outgoing():
            CODEC.decode(out)  # everything the server sends is valid on the wire
        if server.state is State.CLOSED:
            assert server.closed is not None
