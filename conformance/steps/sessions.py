"""Steps of AOI-2 sessions: hello, welcome, reject, resume, register, unregister, bye.

The tokens that register gives are judged in :mod:`conformance.steps.tokens`.
"""

from __future__ import annotations

import secrets

import pytest
from pytest_bdd import given, step, then, when

from conformance.device import Device, describe
from conformance.driver.frames import Frame
from conformance.ixit import PROFILES, IxitError
from conformance.steps import text
from conformance.world import World


@given(text('the AOI Server under test for "{profile:q}"'))
def server_for(world: World, profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"suite: unknown profile {profile!r}")
    world.profile = profile


@step(text('client "{name:q}" is in session'))
def in_session(world: World, name: str) -> None:
    world.device(name).login()


@step(text('client "{name:q}" is in session and has registered app "{app:q}"'))
def in_session_with_app(world: World, name: str, app: str) -> None:
    device = world.device(name)
    device.login()
    device.registered(app)


@step(text('client "{name:q}" is in session and has registered apps "{one:q}" and "{two:q}"'))
def in_session_with_apps(world: World, name: str, one: str, two: str) -> None:
    device = world.device(name)
    device.login()
    device.registered(one)
    device.registered(two)


@step(text('client "{name:q}" leaves with bye'))
def leaves(world: World, name: str) -> None:
    world.device(name).bye()


@when(text('client "{name:q}" connects and says hello'))
def says_hello(world: World, name: str) -> None:
    device = world.device(name)
    device.open()
    device.hello()


@when(text('client "{name:q}" connects and says hello with a wrong credential'))
def says_hello_wrong(world: World, name: str) -> None:
    device = world.device(name)
    device.open()
    device.hello(credential="wrong-" + secrets.token_urlsafe(12))


@when(text('client "{name:q}" connects and says hello with version {version:n}'))
def says_hello_version(world: World, name: str, version: int) -> None:
    device = world.device(name)
    device.open()
    device.hello(version=version)


@when(text('client "{name:q}" connects and says hello with an unknown session'))
def says_hello_unknown_session(world: World, name: str) -> None:
    device = world.device(name)
    device.open()
    unknown = secrets.token_urlsafe(24)
    world.notes["unknown session"] = unknown
    device.hello(session=unknown)


@step(text('client "{name:q}" resumes its session'))
def resumes(world: World, name: str) -> None:
    device = world.device(name)
    earlier = device.session
    world.precondition(earlier is not None, f"client {name} has no session to resume")
    device.open()
    device.hello(session=earlier)
    world.notes[f"resumed from {name}"] = earlier
    frame = device.answer_to_hello()
    world.precondition(
        frame is not None and frame.type == "welcome",
        f"client {name} was not welcomed when resuming: "
        f"{describe(frame, device.connection().closed)}",
    )


@when(text('client "{name:q}" resumes its session on another node of the target\'s fleet'))
def resumes_in_the_fleet(world: World, name: str) -> None:
    """The IXIT's ``[targets.fleet]`` is another node of the target's fleet (the same
    provider's state): the session, its tokens and pushes to them follow the client there."""
    try:
        world.ixit.endpoint("fleet")
    except IxitError:
        pytest.skip("not a fleet: the IXIT gives no [targets.fleet] node of the target's fleet")
    world.profile = "fleet"
    resumes(world, name)


@when(text('client "{name:q}" loses its connection'))
def loses_connection(world: World, name: str) -> None:
    world.device(name).connection().abort()


@when(text('client "{name:q}" registers app "{app:q}"'))
def registers(world: World, name: str, app: str) -> None:
    world.notes[f"register {name}"] = (app, world.device(name).register(app))


@when(text('client "{name:q}" unregisters app "{app:q}"'))
def unregisters(world: World, name: str, app: str) -> None:
    device = world.device(name)
    _unregister(world, device, device.tokens[app])


@when(text('client "{name:q}" unregisters the token of app "{app:q}" of client "{owner:q}"'))
def unregisters_other(world: World, name: str, app: str, owner: str) -> None:
    _unregister(world, world.device(name), world.device(owner).tokens[app])


@when(text('client "{name:q}" registers app "{app:q}" again'))
def registers_again(world: World, name: str, app: str) -> None:
    """Register an unregistered app anew; its old token and endpoint are kept aside."""
    device = world.device(name)
    world.notes[f"unregistered {name} {app}"] = (
        device.tokens.pop(app),
        device.endpoints.pop(app, None),
    )
    device.registered(app)


def _unregister(world: World, device: Device, token: str) -> None:
    req = device.next_req()
    device.connection().send({"type": "unregister", "req": req, "token": token})
    world.notes[f"unregister {device.name}"] = (req, token)


@when(text('client "{name:q}" connects and registers app "{app:q}" before hello'))
def registers_before_hello(world: World, name: str, app: str) -> None:
    device = world.device(name)
    device.open()
    device.connection().send(
        {"type": "register", "req": device.next_req(), "app_id": world.app_id(app)}
    )


# --- judgements ----------------------------------------------------------------------


def _answer(world: World, device: Device) -> Frame | None:
    key = f"answer {device.name}#{device.connections}"
    if key not in world.notes:
        world.notes[key] = device.answer_to_hello()
    answer: Frame | None = world.notes[key]
    return answer


@then(text('client "{name:q}" is welcomed with a session, a keepalive and limits [{req:req}]'))
def is_welcomed(world: World, name: str, req: str) -> None:
    device = world.device(name)
    frame = _answer(world, device)
    frame = world.found(
        req,
        frame,
        f"a valid hello of client {name} was not welcomed: "
        f"{describe(frame, device.connection().closed)}",
        lambda f: f.type == "welcome",
    )
    world.check(
        req,
        not frame.problems,
        f"the welcome is not valid against aoi2/welcome.json: {'; '.join(frame.problems)}",
    )
    expected = world.ixit.server_id
    if expected and world.profile == "main":
        world.check(
            req,
            frame.get("server_id") == expected,
            f"welcome.server_id is {frame.get('server_id')!r}, the IXIT says {expected!r}",
        )


@then(
    text(
        'client "{name:q}" is rejected with reason "{reason:q}" and close code {code:n} [{req:req}]'
    )
)
def is_rejected(world: World, name: str, reason: str, code: int, req: str) -> None:
    device = world.device(name)
    frame = _answer(world, device)
    frame = world.found(
        req,
        frame,
        f"expected reject{{reason: {reason}}} for client {name}: "
        f"{describe(frame, device.connection().closed)}",
        lambda f: f.type == "reject" and f.get("reason") == reason,
    )
    device.closed_with(req, code, f"after reject {reason}")


@then(
    text(
        'client "{name:q}" is refused as invalid_credentials with 4001, or as overloaded with '
        "4503 [{req:req}]"
    )
)
def is_refused_either_way(world: World, name: str, req: str) -> None:
    """An overloaded server may refuse before it checks the credential (docs/protocol.md
    2.6, 5.2): both refusals are right, a welcome (or anything else) is not."""
    device = world.device(name)
    frame = _answer(world, device)
    codes = {"invalid_credentials": 4001, "overloaded": 4503}
    frame = world.found(
        req,
        frame,
        f"client {name}'s wrong credential must be refused with reject{{invalid_credentials}} "
        f"or reject{{overloaded}}: {describe(frame, device.connection().closed)}",
        lambda f: f.type == "reject" and f.get("reason") in codes,
    )
    reason = str(frame.get("reason"))
    device.closed_with(req, codes[reason], f"after reject {reason}")


@then(text('client "{name:q}" is welcomed back with the same session, resumed [{req:req}]'))
def is_welcomed_back(world: World, name: str, req: str) -> None:
    device = world.device(name)
    earlier = world.notes[f"resumed from {name}"]
    welcome = device.welcome or {}
    world.check(
        req,
        welcome.get("session") == earlier and welcome.get("resumed") is True,
        f"resuming session {earlier!r} gave welcome session={welcome.get('session')!r} "
        f"resumed={welcome.get('resumed')!r}; expected the same session and resumed=true",
    )


@then(text('client "{name:q}" is welcomed with a new session, not resumed [{req:req}]'))
def is_welcomed_new(world: World, name: str, req: str) -> None:
    device = world.device(name)
    frame = _answer(world, device)
    unknown = world.notes["unknown session"]
    frame = world.found(
        req,
        frame,
        "an unknown hello.session must be answered with welcome and a new session, not an "
        f"error: {describe(frame, device.connection().closed)}",
        lambda f: f.type == "welcome",
    )
    world.check(
        req,
        frame.get("session") != unknown and frame.get("resumed") in (None, False),
        f"welcome for an unknown session: session={frame.get('session')!r} "
        f"resumed={frame.get('resumed')!r}; expected a new session, not resumed",
    )


@then(text('client "{name:q}" gets a non-fatal error "{code:q}" [{req:req}]'))
def gets_nonfatal_error(world: World, name: str, code: str, req: str) -> None:
    device = world.device(name)
    sent_req, _ = world.notes[f"unregister {name}"]
    frame = device.take(lambda f: f.type in ("error", "unregistered") and f.get("req") == sent_req)
    frame = world.found(
        req,
        frame,
        f"expected error{{code: {code}}}: {describe(frame, device.connection().closed)}",
        lambda f: f.type == "error" and f.get("code") == code,
    )
    world.check(
        req, frame.get("fatal") is False, f"error {code} must not be fatal: {frame.raw!s:.300}"
    )
    world.check(
        req, device.ping_answered(), f"after a non-fatal error client {name} lost its session"
    )


@then(text('client "{name:q}" gets the unregistration confirmed [{req:req}]'))
def unregistration_confirmed(world: World, name: str, req: str) -> None:
    device = world.device(name)
    sent_req, token = world.notes[f"unregister {name}"]
    frame = device.take(lambda f: f.type in ("error", "unregistered") and f.get("req") == sent_req)
    frame = world.found(
        req,
        frame,
        f"unregister was not answered unregistered{{req, token}}: "
        f"{describe(frame, device.connection().closed)}",
        lambda f: f.type == "unregistered" and f.get("token") == token,
    )


@then(text('client "{name:q}" still gets an answer to ping [{req:req}]'))
def still_answers(world: World, name: str, req: str) -> None:
    device = world.device(name)
    world.check(
        req,
        device.ping_answered(),
        f"the session of client {name} no longer answers ping: "
        f"{describe(None, device.connection().closed)}",
    )


@then(text('client "{name:q}" is still in session [{req:req}]'))
def still_in_session(world: World, name: str, req: str) -> None:
    still_answers(world, name, req)


@then(
    text(
        'client "{name:q}" gets a fatal error "{code:q}" and close code {close:n}, '
        "and no registration [{req:req}]"
    )
)
def fatal_no_registration(world: World, name: str, code: str, close: int, req: str) -> None:
    fatal_error(world, name, code, close, req)
    device = world.device(name)
    served = [f for f in device.connection().frames() if f.type == "registered"]
    world.check(
        req,
        not served,
        f"a register before hello was served: {served[0].raw!r:.300}" if served else "",
    )


@then(text('client "{name:q}" gets a fatal error "{code:q}" and close code {close:n} [{req:req}]'))
def fatal_error(world: World, name: str, code: str, close: int, req: str) -> None:
    device = world.device(name)
    frame = device.take(lambda f: f.type in ("error", "registered", "welcome"))
    frame = world.found(
        req,
        frame,
        f"expected error{{code: {code}, fatal: true}}: "
        f"{describe(frame, device.connection().closed)}",
        lambda f: f.type == "error" and f.get("code") == code,
    )
    world.check(req, frame.get("fatal") is True, f"the error must be fatal: {frame.raw!s:.300}")
    device.closed_with(req, close, "after a fatal error")
