"""Steps of the WebSocket upgrade, the handshake timeout and keepalive."""

from __future__ import annotations

import time

from pytest_bdd import step, then, when

from conformance.device import RESPONSE_S, describe
from conformance.driver.frames import SUBPROTOCOL
from conformance.steps import text
from conformance.world import World

GRACE_S = 3.0  # added to a timer of the target before the suite calls it late


@when(text('client "{name:q}" opens a WebSocket offering the subprotocol "{offer:q}"'))
def opens_with(world: World, name: str, offer: str) -> None:
    world.notes["handshake"] = world.device(name).connect((offer,))


@when(text('client "{name:q}" opens a WebSocket offering no subprotocol'))
def opens_without(world: World, name: str) -> None:
    world.notes["handshake"] = world.device(name).connect(())


@then(text('the upgrade is accepted with the subprotocol "{offer:q}" [{req:req}]'))
def upgrade_accepted(world: World, offer: str, req: str) -> None:
    handshake = world.notes["handshake"]
    world.check(
        req,
        handshake.accepted and handshake.subprotocol == offer,
        f"upgrade offering {offer!r}: accepted={handshake.accepted} "
        f"subprotocol={handshake.subprotocol!r} status={handshake.status} {handshake.error}",
    )


@then(text("the upgrade is refused [{req:req}]"))
def upgrade_refused(world: World, req: str) -> None:
    handshake = world.notes["handshake"]
    if not handshake.accepted:  # the target answered: a connection never made stopped earlier
        world.check(req, True, f"refused: HTTP {handshake.status} {handshake.error}")
        return
    # Accepted: only a server that at once closes the connection has refused it.
    device = next(iter(world.devices.values()))
    closed = device.connection().wait_closed(world.timeout(RESPONSE_S))
    closed = world.found(
        req,
        closed,
        f"the server accepted an upgrade without {SUBPROTOCOL} "
        f"(selected {handshake.subprotocol!r}) and kept the connection open",
        lambda c: c.by_target,
    )


@when(text('client "{name:q}" opens a WebSocket and sends nothing'))
def opens_silent(world: World, name: str) -> None:
    world.device(name).open()


@then(
    text(
        'the server closes the connection of client "{name:q}" with code 4408 '
        "within the handshake timeout [{req:req}]"
    )
)
def closed_by_handshake_timeout(world: World, name: str, req: str) -> None:
    device = world.device(name)
    limit = world.ixit.handshake_timeout_s
    closed = device.wait_closed(limit + GRACE_S)
    opened = device.connection().handshake.at
    closed = world.found(
        req,
        closed,
        f"a connection without hello was still open {limit + GRACE_S:.1f} s later "
        f"(handshake timeout {limit} s in the IXIT)",
        lambda c: c.by_target,
    )
    world.check(
        req,
        closed.code == 4408,
        f"closed with {closed.code} {closed.reason}; expected 4408 (timeout)",
    )
    world.check(
        req,
        closed.at - opened >= min(limit * 0.5, limit - 0.5),
        f"closed after {closed.at - opened:.2f} s, well before the handshake timeout of {limit} s",
    )


# --- keepalive -----------------------------------------------------------------------


@when(text('client "{name:q}" fetches the provider\'s policy'))
def fetches_policy(world: World, name: str) -> None:
    identity = world.device(name).identity
    world.notes["policy"] = world.http().request(
        "GET", "/v1/provisioning", basic=(identity.client_id, identity.credential), channel="aoi-p"
    )


@then(
    text('the keepalive of client "{name:q}" does not exceed the policy\'s keepalive_s [{req:req}]')
)
def keepalive_within_policy(world: World, name: str, req: str) -> None:
    answer = world.notes["policy"]
    world.precondition(
        answer.status == 200 and isinstance(answer.body, dict),
        f"the policy document could not be fetched: HTTP {answer.status} {answer.text[:200]}",
    )
    policy = answer.json_object.get("keepalive_s")
    given = (world.device(name).welcome or {}).get("keepalive_s")
    world.check(
        req,
        isinstance(given, int) and isinstance(policy, int) and given <= policy,
        f"welcome.keepalive_s={given!r} exceeds (or is not comparable with) "
        f"the policy's keepalive_s={policy!r}",
    )


@when(text('client "{name:q}" sends ping with ts {ts:num}'))
def sends_ping(world: World, name: str, ts: float) -> None:
    world.device(name).connection().send({"type": "ping", "ts": ts})


@then(text('client "{name:q}" receives pong with ts {ts:num} [{req:req}]'))
def receives_pong(world: World, name: str, ts: float, req: str) -> None:
    device = world.device(name)
    frame = device.take(lambda f: f.type == "pong" and f.get("ts") == ts)
    frame = world.found(
        req,
        frame,
        f"no pong echoing ts {ts}: {describe(None, device.connection().closed)}",
    )


@step(text('client "{name:q}" is in session and stays silent'))
def silent_session(world: World, name: str) -> None:
    device = world.device(name)
    device.open()
    connection = device.connection()
    connection.auto_pong = False
    device.hello()
    frame = device.take(lambda f: f.type in ("welcome", "reject", "error"))
    world.precondition(
        frame is not None and frame.type == "welcome",
        f"client {name} was not welcomed: {describe(frame, connection.closed)}",
    )
    assert frame is not None
    device.welcome = frame.message  # no keepalive pings: this client stays silent
    world.notes[f"silent since {name}"] = time.monotonic()


@step(text('client "{name:q}" is in session and pings every keepalive interval'))
def pinging_session(world: World, name: str) -> None:
    world.device(name).login()  # a welcomed device pings when it has sent nothing for keepalive_s


@then(
    text(
        'the server closes the session of client "{name:q}" with code 4408 '
        "after twice the keepalive [{req:req}]"
    )
)
def closed_for_silence(world: World, name: str, req: str) -> None:
    device = world.device(name)
    given = (device.welcome or {}).get("keepalive_s")
    world.precondition(isinstance(given, int | float), "welcome gave no keepalive_s")
    keepalive = float(given or 0)
    silent_since = world.notes[f"silent since {name}"]
    closed = device.wait_closed(2 * keepalive + GRACE_S)
    closed = world.found(
        req,
        closed,
        f"a session silent for {2 * keepalive + GRACE_S:.1f} s (keepalive_s={keepalive}) "
        "was not closed",
        lambda c: c.by_target,
    )
    world.check(
        req, closed.code == 4408, f"closed with {closed.code} {closed.reason}; expected 4408"
    )
    silent = closed.at - silent_since
    world.check(
        req,
        silent >= keepalive,
        f"closed after {silent:.2f} s of silence, before even one keepalive interval "
        f"({keepalive} s)",
    )
