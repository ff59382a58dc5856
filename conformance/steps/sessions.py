"""Steps of AOI-2 sessions: hello, welcome, reject, resume, register, unregister, bye."""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

import pytest
from pytest_bdd import given, step, then, when

from conformance.driver.aoi2 import Frame
from conformance.ixit import PROFILES, IxitError
from conformance.steps import text
from conformance.world import Device, World, describe

TOKEN = re.compile(r"^[A-Za-z0-9_-]{22,256}$")
DIFFERING_MIN = 18  # characters two random tokens differ in, at least (see tokens_random)
NAME_IN_TOKEN_MIN = 8  # ids at least this long must not appear in a token (tokens_random)


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


@then(
    text(
        'the new token of app "{app:q}" of client "{name:q}" differs from its unregistered one '
        "[{req:req}]"
    )
)
def token_is_new(world: World, app: str, name: str, req: str) -> None:
    old, _ = world.notes[f"unregistered {name} {app}"]
    world.check(
        req,
        world.device(name).tokens[app] != old,
        f"registered again after unregistering, app {app} got back its old token {old!r}: "
        "a token that a client and app id always give is computed, not drawn at random",
    )


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


@then(
    text('client "{name:q}" gets a token of at least 128 bits and an endpoint for it [{req:req}]')
)
def gets_token(world: World, name: str, req: str) -> None:
    device = world.device(name)
    alias, frame = world.notes[f"register {name}"]
    frame = world.found(
        req,
        frame,
        f"register was not answered with registered: {describe(frame, device.connection().closed)}",
        lambda f: f.type == "registered",
    )
    token, endpoint = frame.get("token"), frame.get("endpoint")
    world.check(
        req,
        isinstance(token, str) and bool(TOKEN.match(token)),
        f"token {token!r} is not base64url of at least 22 characters (128 bits)",
    )
    world.check(
        req,
        frame.get("req") == device._req and frame.get("app_id") == world.app_id(alias),
        f"registered must echo req and app_id: {frame.raw!s:.300}",
    )
    parts = urlsplit(endpoint if isinstance(endpoint, str) else "")
    world.check(
        req,
        parts.scheme in ("http", "https")
        and bool(parts.netloc)
        and parts.path.endswith(f"/v1/push/{token}"),
        f"endpoint {endpoint!r} is not the full AOI-3 URL .../v1/push/{{token}} of this token",
    )


@then(
    text('the tokens of clients "{a:q}" and "{b:q}" are all different and look random [{req:req}]')
)
def tokens_random(world: World, a: str, b: str, req: str) -> None:
    found = {
        f"{name}/{alias}": token
        for name in (a, b)
        for alias, token in world.device(name).tokens.items()
    }
    tokens = list(found.values())
    world.check(
        req,
        len(set(tokens)) == len(tokens) == 4,
        f"expected 4 different tokens for 2 clients x 2 apps, got {found}",
    )
    world.check(
        req,
        all(TOKEN.match(t) for t in tokens),
        f"tokens must be base64url of at least 22 characters (128 bits): {found}",
    )
    # A token may carry fixed parts (a server or shard name) besides its 128 random bits,
    # but between what two tokens share at their ends, 22 random characters must differ;
    # by chance a few of them coincide (DIFFERING_MIN allows 4, a chance below one in 10^6).
    for i, first in enumerate(tokens):
        for second in tokens[i + 1 :]:
            prefix = len(_common_prefix(first, second))
            suffix = len(_common_prefix(first[::-1], second[::-1]))
            differing = min(len(first), len(second)) - prefix - suffix
            world.check(
                req,
                differing >= DIFFERING_MIN,
                f"tokens {first!r} and {second!r} differ in only {max(differing, 0)} characters "
                f"between a common prefix of {prefix} and suffix of {suffix}: they look derived, "
                "not random (128 random bits are 22 base64url characters)",
            )
    # Only names long enough that a random token does not hold them by chance (a two-letter
    # client id is in one random token of a few hundred).
    names = [world.device(n).identity.client_id for n in (a, b)]
    names += [world.app_id(alias) for alias in ("one", "two")]
    names = [name for name in names if len(name) >= NAME_IN_TOKEN_MIN]
    world.check(
        req,
        not any(name in token for name in names for token in tokens),
        "a token contains a client id or an app id: tokens must be random",
    )


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


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
