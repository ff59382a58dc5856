"""Client mode, the servers' side: what the suite's AOI Servers do, and what they received.

Notifications are named by their payload (their label); the suite gives each label one
notification id, so that sending a label "again" is a redelivery of the same id.
"""

from __future__ import annotations

import secrets
import time
from functools import partial

from pytest_bdd import given, then, when

from conformance.client_refusals import CREDENTIAL_REASONS, describe_answer, first_refusal
from conformance.client_stage import Stage
from conformance.driver.aoi2 import Frame
from conformance.driver.aoi2_server import ServerConnection, SuiteServer, now_rfc3339
from conformance.steps import text
from conformance.steps.client_setup import names


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


# --- what the servers received ----------------------------------------------------------------


@then(text('server "{name:q}" receives register for app "{alias:q}" [{req:req}]'))
def receives_register(stage: Stage, name: str, alias: str, req: str) -> None:
    server, app = stage.servers[name], stage.app(alias)
    frame = stage.wait(
        lambda: next((f for f in server.frames("register") if f.get("app_id") == app.app_id), None),
        stage.patience(),
    )
    stage.world.found(req, frame, f"server {name} got no register for {app.app_id}")


def _ack(stage: Stage, name: str, label: str, count: int, req: str, hint: str = "") -> None:
    server = stage.servers[name]
    notification_id = server.notifications[label]

    def enough() -> list[Frame] | None:
        found = server.acked(notification_id)
        return found if len(found) >= count else None

    acks = stage.wait(enough, stage.timeout())
    stage.world.found(
        req,
        acks,
        f"server {name} got {len(server.acked(notification_id))} ack(s) for {label!r} "
        f"({notification_id}); expected {count}{hint}",
    )


@then(text('server "{name:q}" receives an ack for "{label:q}" [{req:req}]'))
def receives_ack(stage: Stage, name: str, label: str, req: str) -> None:
    _ack(stage, name, label, 1, req)


@then(text('server "{name:q}" receives an ack for "{label:q}" again [{req:req}]'))
def receives_ack_again(stage: Stage, name: str, label: str, req: str) -> None:
    shown = [
        f"app {a.alias} got it {len(stage.read(partial(a.got, label)))} time(s)"
        for a in stage.apps.values()
    ]
    hint = (
        ": a notification the app acked before is acked to the server at once, without "
        f"reaching the app again ({', '.join(shown)})"
    )
    _ack(stage, name, label, 2, req, hint)


@then(
    text(
        'server "{name:q}" has received no ack for "{label:q}" after a ping round trip [{req:req}]'
    )
)
def no_ack_yet(stage: Stage, name: str, label: str, req: str) -> None:
    server, conn = session_of(stage, name)
    stage.world.precondition(
        ping_round_trip(stage, server, conn) is not None,
        f"the AOI Client did not answer a ping of server {name}",
    )
    acks = stage.read(lambda: server.acked(server.notifications[label]))
    stage.world.check(
        req,
        not acks,
        f"the AOI Client acked {label!r} to server {name} before the app acked it: "
        f"{[str(f.raw) for f in acks]}",
    )


@then(text('server "{name:q}" receives unregister for the token of app "{alias:q}" [{req:req}]'))
def receives_unregister(stage: Stage, name: str, alias: str, req: str) -> None:
    server = stage.servers[name]
    token = stage.notes[f"token of {alias}"]
    frame = stage.wait(
        lambda: next((f for f in server.frames("unregister") if f.get("token") == token), None),
        stage.timeout(),
    )
    stage.world.found(req, frame, f"server {name} got no unregister for app {alias}'s token")


@then(
    text(
        'server "{name:q}" receives error "{code:q}", not fatal, and the session stays open '
        "[{req:req}]"
    )
)
def server_receives_error(stage: Stage, name: str, code: str, req: str) -> None:
    server, conn = session_of(stage, name)
    frame = stage.wait(lambda: next(iter(conn.received("error")), None), stage.timeout())
    frame = stage.world.found(
        req, frame, f"the AOI Client sent server {name} no error for a message of unknown type"
    )
    stage.world.check(
        req,
        frame.get("code") == code and frame.get("fatal") is False,
        f"the AOI Client sent {frame.raw!s}; expected a non-fatal error {code!r}",
    )
    stage.world.check(
        req,
        ping_round_trip(stage, server, conn) is not None and conn.closed is None,
        f"after the unknown message the session with server {name} did not go on ({conn.closed})",
    )


@then(
    text(
        'server "{name:q}" was offered the subprotocol "{offer:q}" and got hello with '
        "version {version:n} [{req:req}]"
    )
)
def offered_and_hello(stage: Stage, name: str, offer: str, version: int, req: str) -> None:
    server = stage.servers[name]
    conn = stage.wait(
        lambda: next((c for c in server.connections if c.hello is not None), None),
        stage.patience(),
    )
    conn = stage.world.found(req, conn, f"server {name} got no hello")
    stage.world.check(
        req,
        offer in (conn.offered or []),
        f"the AOI Client offered the subprotocols {conn.offered}, not {offer!r}",
    )
    assert conn.hello is not None
    stage.world.check(
        req,
        conn.hello.get("version") == version,
        f"hello.version {conn.hello.get('version')!r}, expected {version}",
    )


@then(
    text(
        'the AOI Client closes the connection to server "{name:q}" without sending hello '
        "[{req:req}]"
    )
)
def closes_without_hello(stage: Stage, name: str, req: str) -> None:
    server = stage.servers[name]
    conn = stage.wait(
        lambda: next(
            (c for c in server.connections if c.offered is not None and c.closed is not None),
            None,
        ),
        stage.patience(),
    )
    upgraded = [c for c in server.connections if c.offered is not None]
    conn = stage.world.found(
        req,
        conn,
        f"the AOI Client kept open a connection on which no subprotocol was selected "
        f"({len(upgraded)} upgraded connection(s))",
    )
    stage.world.check(
        req,
        not conn.frames,
        f"the AOI Client sent {[str(f.raw)[:100] for f in conn.frames]} on a connection "
        "without the subprotocol aoi.v1",
    )


@then(text("the AOI Client fetched the policy with its client credentials [{req:req}]"))
def fetched_policy(stage: Stage, req: str) -> None:
    endpoint = stage.providers[0].endpoint
    fetch = stage.wait(lambda: next(iter(endpoint.served()), None), stage.timeout())
    tried = [(f.status, f.client_id) for f in endpoint.fetches]
    stage.world.found(
        req,
        fetch,
        f"the AOI Client did not fetch its policy with its credentials (Basic "
        f"{stage.target.client_id}:...); requests: {tried}",
    )


@then(
    text('the AOI Client registers apps "{one:q}" and "{two:q}" at server "{name:q}" [{req:req}]')
)
def registers_at(stage: Stage, one: str, two: str, name: str, req: str) -> None:
    for alias in (one, two):
        receives_register(stage, name, alias, req)


@then(text('servers "{listed:q}" received hellos in that order [{req:req}]'))
def hellos_in_order(stage: Stage, listed: str, req: str) -> None:
    order = names(listed)
    for name in order:
        server = stage.servers[name]
        first = stage.wait(partial(_first_hello, server), stage.patience())
        stage.world.found(req, first, f"server {name} got no hello: the client did not try it")
    firsts = [stage.read(partial(_first_hello_at, stage, n)) for n in order]
    arrived = sorted(order, key=lambda n: firsts[order.index(n)])
    stage.world.check(
        req, arrived == order, f"first hellos arrived in the order {arrived}, not {order}"
    )


@then(text('server "{name:q}", which the policy does not list, is never contacted [{req:req}]'))
def stranger_untouched(stage: Stage, name: str, req: str) -> None:
    count = stage.read(lambda: len(stage.servers[name].connections))
    stage.world.check(
        req,
        count == 0,
        f"the AOI Client connected {count} time(s) to server {name}, which only a reject "
        "suggested; its policy does not list it",
    )


@then(text('server "{name:q}" is never contacted [{req:req}]'))
def untouched(stage: Stage, name: str, req: str) -> None:
    count = stage.read(lambda: len(stage.servers[name].connections))
    stage.world.check(req, count == 0, f"the AOI Client connected {count} time(s) to server {name}")


@then(
    text(
        'the AOI Client tries server "{name:q}" again without contacting server "{other:q}" '
        "[{req:req}]"
    )
)
def retries_same(stage: Stage, name: str, other: str, req: str) -> None:
    server, elsewhere = stage.servers[name], stage.servers[other]
    what = "whether the client fails over after a credential refusal"
    refused = first_refusal(stage, name, what, CREDENTIAL_REASONS)
    since = refused.answered_at
    assert since is not None

    def failover() -> list[ServerConnection]:
        return [c for c in elsewhere.connections if c.opened_at > since]

    stage.wait(lambda: len(server.hellos()) >= 2 or bool(failover()), stage.patience())
    moved = stage.read(failover)
    stage.world.check(
        req,
        not moved,
        f"after a credential refusal by server {name} ({describe_answer(refused)}) the AOI "
        f"Client failed over to server {other}: {len(moved)} connection(s), the first "
        f"{moved[0].opened_at - since if moved else 0:.3f} s after the refusal",
    )
    stage.world.check(
        req,
        len(stage.read(server.hellos)) >= 2,
        f"the AOI Client did not try server {name} again after its credential refusal "
        f"({describe_answer(refused)})",
    )


@then(
    text('server "{name:q}" gets its first hello and no other within {s:num} seconds [{req:req}]')
)
def asked_once(stage: Stage, name: str, s: float, req: str) -> None:
    server = stage.servers[name]
    first = stage.wait(lambda: next(iter(server.hellos()), None), stage.patience())
    stage.world.found(req, first, f"server {name} got no hello: the client did not try it")
    again = stage.wait(lambda: len(server.hellos()) >= 2 or None, stage.world.timeout(s))
    hellos = stage.read(server.hellos)
    stage.world.check(
        req,
        again is None,
        f"the AOI Client said hello to server {name} again {hellos[-1].at - hellos[0].at:.2f} s "
        f"after the first (versions {hellos[0].get('version')} and {hellos[-1].get('version')})",
    )


@then(
    text(
        'the AOI Client opens a connection to server "{name:q}" but never sends it hello '
        "[{req:req}]"
    )
)
def tls_refused(stage: Stage, name: str, req: str) -> None:
    server = stage.servers[name]
    conn = stage.wait(
        lambda: next((c for c in server.connections if c.closed is not None), None),
        stage.patience(),
    )
    conn = stage.world.found(
        req,
        conn,
        f"the AOI Client made no connection to server {name} that ended "
        f"({len(server.connections)} open)",
    )
    hellos = stage.read(server.hellos)
    stage.world.check(
        req,
        not hellos and conn.offered is None,
        f"the AOI Client went on over TLS with a certificate it cannot verify: "
        f"{'hello sent' if hellos else 'WebSocket upgrade sent'}",
    )


@then(
    text(
        'the AOI Client holds sessions with servers "{one:q}" and "{two:q}" at the same time '
        "[{req:req}]"
    )
)
def holds_both(stage: Stage, one: str, two: str, req: str) -> None:
    a, b = stage.servers[one], stage.servers[two]
    both = stage.wait(
        lambda: (a.current(), b.current()) if a.current() and b.current() else None,
        stage.patience(),
    )
    stage.world.found(
        req,
        both,
        f"the AOI Client did not hold sessions with servers {one} and {two} at once "
        f"(open: {one}={a.current() is not None}, {two}={b.current() is not None})",
    )


@then(text('the session with server "{name:q}" stayed open throughout [{req:req}]'))
def stayed_open(stage: Stage, name: str, req: str) -> None:
    server = stage.servers[name]
    seen = stage.read(lambda: [(c.n, c.hello is not None, c.closed) for c in server.connections])
    sessions = [s for s in seen if s[1]]
    stage.world.check(
        req,
        len(sessions) == 1 and sessions[0][2] is None,
        f"the session with server {name} did not stay open: sessions (n, hello, closed) {seen}",
    )


@then(
    text(
        'the AOI Client unregisters app "{alias:q}" at server "{name:q}" and leaves it with bye '
        "[{req:req}]"
    )
)
def leaves_with_bye(stage: Stage, alias: str, name: str, req: str) -> None:
    server, app = stage.servers[name], stage.app(alias)
    tokens = stage.read(lambda: server.tokens_issued(app.app_id))
    unregister = stage.wait(
        lambda: next((f for f in server.frames("unregister") if f.get("token") in tokens), None),
        stage.timeout(),
    )
    stage.world.check(
        req,
        unregister is not None,
        f"the AOI Client did not unregister app {alias}'s token at server {name}, which it left",
    )
    bye = stage.wait(lambda: next(iter(server.frames("bye")), None), stage.timeout())
    stage.world.check(req, bye is not None, f"the AOI Client did not leave server {name} with bye")


@then(
    text(
        'the AOI Client pings server "{name:q}" after {interval:num} s without sending, not much '
        "sooner [{req:req}]"
    )
)
def pings_at_keepalive(stage: Stage, name: str, interval: float, req: str) -> None:
    server, conn = session_of(stage, name)
    slack = stage.target.tolerances.keepalive_s
    ping = stage.wait(
        lambda: next(iter(conn.received("ping")), None), stage.timeout(interval + slack + 5)
    )
    ping = stage.world.found(
        req,
        ping,
        f"the AOI Client sent server {name} no ping within {interval + slack + 5:.0f} s "
        f"(welcome.keepalive_s {server.keepalive_s}, policy keepalive_s "
        f"{stage.policy.keepalive_s})",
    )
    before = [f for f in conn.frames if f.seq < ping.seq]
    since = before[-1].at if before else conn.answered_at or conn.opened_at
    silence = ping.at - since
    stage.world.check(
        req,
        interval / 2 <= silence <= interval + slack,
        f"the AOI Client pinged after {silence:.2f} s without sending; the keepalive is "
        f"{interval} s (tolerance {slack} s)",
    )


@then(
    text(
        'the AOI Client answers a ping from server "{name:q}" with a pong echoing its ts '
        "[{req:req}]"
    )
)
def answers_ping(stage: Stage, name: str, req: str) -> None:
    server, conn = session_of(stage, name)
    pong = ping_round_trip(stage, server, conn)
    stage.world.found(req, pong, f"the AOI Client did not answer server {name}'s ping with pong")


def _first_hello(server: SuiteServer) -> Frame | None:
    return next(iter(server.hellos()), None)


def _first_hello_at(stage: Stage, name: str) -> float:
    return stage.hellos(name)[0].at
