"""Client mode, the servers' side: what the suite's AOI Servers do on a session.

Notifications are named by their payload (their label); the suite gives each label one
notification id, so that sending a label "again" is a redelivery of the same id. What the
servers received is judged in :mod:`conformance.steps.client_messages`, how the client
connected to them in :mod:`conformance.steps.client_connections`.
"""

from __future__ import annotations

import secrets
import time

from pytest_bdd import given, then, when

from conformance.client_stage import Stage
from conformance.driver.aoi2_server import SuiteServer, now_rfc3339
from conformance.driver.frames import Frame
from conformance.driver.server_connection import ServerConnection
from conformance.steps import text


def session_of(stage: Stage, name: str) -> tuple[SuiteServer, ServerConnection]:
    """Server ``name`` and its open session with the client (a precondition)."""
    server = stage.servers[name]
    conn = stage.wait(server.current, stage.timeout())
    stage.world.precondition(
        conn is not None, f"the AOI Client has no open session with server {name}"
    )
    assert conn is not None
    return server, conn


def notify(stage: Stage, name: str, label: str, alias: str, token: str | None, again: bool) -> None:
    server, conn = session_of(stage, name)
    app = stage.app(alias)
    if token is None:
        token = stage.read(lambda: conn.session.tokens.get(app.app_id) if conn.session else None)
    stage.world.precondition(
        token is not None, f"server {name} issued no token to app {alias} in this session"
    )
    if again:
        stage.world.precondition(label in server.notifications, f"{label!r} was never sent")
        notification_id = server.notifications[label]
    else:
        notification_id = "n" + secrets.token_hex(8)
        server.notifications[label] = notification_id
    message = {
        "type": "notify",
        "id": notification_id,
        "token": token,
        "app_id": app.app_id,
        "payload": label,
        "priority": "normal",
        "ttl_s": 3600,
        "created_at": now_rfc3339(),
    }
    stage.world.precondition(
        server.send(conn, message), f"server {name} could not send {label!r}: session closed"
    )


def ping_round_trip(stage: Stage, server: SuiteServer, conn: ServerConnection) -> Frame | None:
    ts = round(time.time(), 3) + 0.25
    server.send(conn, {"type": "ping", "ts": ts})
    return stage.wait(
        lambda: next((f for f in conn.received("pong") if f.get("ts") == ts), None),
        stage.timeout(),
    )


# --- what the servers do ----------------------------------------------------------------------


@when(text('server "{name:q}" sends notification "{label:q}" to app "{alias:q}"'))
def sends_notification(stage: Stage, name: str, label: str, alias: str) -> None:
    notify(stage, name, label, alias, None, again=False)


@when(text('server "{name:q}" sends notification "{label:q}" to app "{alias:q}" again'))
def sends_again(stage: Stage, name: str, label: str, alias: str) -> None:
    notify(stage, name, label, alias, None, again=True)


@when(
    text(
        'server "{name:q}" sends notification "{label:q}" to app "{alias:q}" '
        "with a token it never issued"
    )
)
def sends_stray(stage: Stage, name: str, label: str, alias: str) -> None:
    notify(stage, name, label, alias, secrets.token_urlsafe(18), again=False)


@when(
    text(
        'server "{name:q}" sends notification "{label:q}" to app "{alias:q}" '
        'with the token server "{other:q}" issued'
    )
)
def sends_foreign(stage: Stage, name: str, label: str, alias: str, other: str) -> None:
    token = stage.read(lambda: stage.servers[other].token_of(stage.app(alias).app_id))
    stage.world.precondition(token is not None, f"server {other} issued app {alias} no token")
    notify(stage, name, label, alias, token, again=False)


@given(
    text('server "{name:q}" delivered notification "{label:q}" to app "{alias:q}", which acked it')
)
def delivered_and_acked(stage: Stage, name: str, label: str, alias: str) -> None:
    notify(stage, name, label, alias, None, again=False)
    app = stage.app(alias)
    got = stage.wait(lambda: next(iter(app.got(label)), None), stage.timeout())
    stage.world.precondition(got is not None, f"app {alias} did not receive {label!r}")
    assert got is not None
    stage.send_app(app, {"type": "app_ack", "id": got.get("id")})
    server = stage.servers[name]
    acked = stage.wait(lambda: server.acked(server.notifications[label]), stage.timeout())
    stage.world.precondition(bool(acked), f"server {name} got no ack for {label!r}")


@when(text('server "{name:q}" redirects the session with reason "{reason:q}"'))
def redirects(stage: Stage, name: str, reason: str) -> None:
    server, conn = session_of(stage, name)
    server.redirect(conn, {"type": "redirect", "reason": reason})


@when(text('server "{name:q}" drops the connection'))
def drops(stage: Stage, name: str) -> None:
    server, conn = session_of(stage, name)
    stage.notes[f"dropped {name}"] = conn.n
    server.drop(conn)


@when(text('the AOI Client is in session with server "{name:q}" again'))
def in_session_again(stage: Stage, name: str) -> None:
    server = stage.servers[name]
    dropped = stage.notes.get(f"dropped {name}", 0)
    registered = [a.app_id for a in stage.apps.values()]

    def ready() -> ServerConnection | None:
        conn = server.current()
        if conn is None or conn.n <= dropped:
            return None
        asked = {f.get("app_id") for f in conn.received("register")}
        return conn if conn.resumed or set(registered) <= asked else None

    stage.world.precondition(
        stage.wait(ready, stage.patience()) is not None,
        f"the AOI Client did not come back to server {name} (and register its apps there)",
    )


@when(text('server "{name:q}" sends a message of unknown type "{kind:q}"'))
def sends_unknown(stage: Stage, name: str, kind: str) -> None:
    server, conn = session_of(stage, name)
    server.send(conn, {"type": kind})


# Bytes a server must never send on an established session, each a WebSocket protocol error
# (RFC 6455 5.2, 5.6, 8.1): the client fails the connection, and nothing more.
GARBAGE = {
    "bytes that are not WebSocket frames": b"GARBAGE\x00\xff\xfe",
    "a frame with a reserved opcode": bytes((0x83, 0x00)),
    "a text frame that is not UTF-8": bytes((0x81, 0x04)) + b"\xff\xfe\xfd\xfc",
    "a masked frame": bytes((0x81, 0x82)) + b"\x01\x02\x03\x04" + b"\x7a\x20",
}


@when(text('server "{name:q}" sends the AOI Client {garbage}'))
def sends_garbage(stage: Stage, name: str, garbage: str) -> None:
    if garbage not in GARBAGE:
        raise ValueError(f"suite: unknown garbage {garbage!r}")
    server, conn = session_of(stage, name)
    server.send_bytes(conn, GARBAGE[garbage], garbage)


@then(text('server "{name:q}" welcomes the AOI Client after all'))
def welcomed_after_all(stage: Stage, name: str) -> None:
    server = stage.servers[name]
    welcomed = stage.wait(
        lambda: next(
            (c for c in server.connections if c.answer is not None and c.answer.kind == "welcome"),
            None,
        ),
        stage.patience(sum(a.retry_after_s or 0 for a in server.answers) + 5),
    )
    stage.world.precondition(
        welcomed is not None,
        f"the AOI Client did not come back to server {name} once it accepted again "
        f"({len(server.connections)} connections)",
    )
