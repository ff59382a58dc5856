"""Client mode, what the suite's AOI Servers received on a session: register, ack,
unregister, error, bye, ping and pong.

Notifications are named by their payload (their label), as the servers sent them
(:mod:`conformance.steps.client_servers`).
"""

from __future__ import annotations

from functools import partial

from pytest_bdd import then

from conformance.client_stage import Stage
from conformance.driver.frames import Frame
from conformance.steps import text
from conformance.steps.client_servers import ping_round_trip, session_of


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
    text('the AOI Client registers apps "{one:q}" and "{two:q}" at server "{name:q}" [{req:req}]')
)
def registers_at(stage: Stage, one: str, two: str, name: str, req: str) -> None:
    for alias in (one, two):
        receives_register(stage, name, alias, req)


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
