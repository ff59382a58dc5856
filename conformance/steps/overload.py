"""Steps of overload: driving the target into overload and out, shedding, AOI-3 under load."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pytest_bdd import step, then, when

from conformance.device import RESPONSE_S, Device, describe
from conformance.driver.frames import Frame
from conformance.driver.wait_any import wait_any
from conformance.ixit import Client, IxitError
from conformance.steps import text
from conformance.steps.pushes import push_to
from conformance.targets import run_command
from conformance.world import World

RETRY_S = 0.2  # between two hellos while waiting for the target to accept again


def _fillers(world: World) -> Iterator[Client]:
    """Identities for filler sessions: the IXIT's clients no step of the scenario names."""
    spare = [c for n, c in sorted(world.ixit.clients.items()) if n not in world.mentioned]
    world.precondition(bool(spare), "the IXIT has no client left to fill the server with")
    n = 0
    while True:
        yield spare[n % len(spare)]
        n += 1


def _filler(world: World, identity: Client) -> Device:
    name = f"filler {len(world.fillers) + 1}"
    device = Device(world, name, identity)
    world.devices[name] = device
    world.fillers.append(device)
    return device


def _in_session(world: World) -> int:
    return sum(
        1
        for d in world.devices.values()
        if d.welcome is not None and d.conn is not None and d.conn.closed is None
    )


@step(text("the server is overloaded"))
def overloaded(world: World) -> None:
    overload = world.ixit.overload
    if overload.method == "command":
        world.precondition(bool(overload.on), "the IXIT gives no [overload] on command")
        run_command(overload.on, world.timeout(60))
        world.cleanups.append(lambda: run_command(overload.off, world.timeout(60)))
        return
    world.precondition(overload.max_sessions > 0, "the IXIT gives no [overload] max_sessions")
    identities = _fillers(world)
    while _in_session(world) < overload.max_sessions:
        device = _filler(world, next(identities))
        device.open()
        device.hello()
        frame = device.answer_to_hello()
        if frame is not None and frame.type == "reject" and frame.get("reason") == "overloaded":
            break  # already there: sessions of earlier scenarios may still be counted
        world.precondition(
            frame is not None and frame.type == "welcome",
            f"{device.name} ({device.identity.client_id}) was not welcomed while filling the "
            f"server to max_sessions={overload.max_sessions}: "
            f"{describe(frame, device.connection().closed)}",
        )


@step(text("its push path is overloaded"))
def push_path_overloaded(world: World) -> None:
    """The profile's instance is configured with its push path overloaded the whole time
    (a loop-lag or store-backlog threshold it always passes); wait until it says so."""
    try:
        world.endpoint()
    except IxitError as e:
        pytest.skip(f"AOI-3 under an overloaded push path cannot be provoked: {e}")
    deadline = time.monotonic() + world.timeout(RESPONSE_S)
    while True:
        answer = world.http().request("GET", "/v1/health", channel="health")
        if answer.status == 503 or time.monotonic() >= deadline:
            break
        time.sleep(RETRY_S)  # the target measures its own load on its own schedule
    world.precondition(
        answer.status == 503,
        f"the {world.profile} instance does not report itself overloaded: "
        f"{answer.status} {answer.text[:200]}",
    )


@when(text("the overload ends"))
def overload_ends(world: World) -> None:
    overload = world.ixit.overload
    if overload.method == "command":
        run_command(overload.off, world.timeout(60))
        world.cleanups.clear()
        return
    for device in world.fillers:
        if device.conn is not None and device.conn.closed is None:
            device.bye()


@then(text('client "{name:q}" is welcomed again [{req:req}]'))
def welcomed_again(world: World, name: str, req: str) -> None:
    device = world.device(name)
    deadline = time.monotonic() + world.timeout(15)
    answers: list[str] = []
    while True:
        device.open()
        device.hello()
        frame = device.answer_to_hello()
        if frame is not None and frame.type == "welcome":
            world.check(req, True, f"welcomed after {len(answers)} refusal(s)")
            return
        answers.append(describe(frame, device.connection().closed))
        if time.monotonic() >= deadline:
            break
        device.connection().close(timeout=world.timeout(1))
        time.sleep(RETRY_S)  # the target's load falls on its own schedule
    world.check(
        req,
        False,
        f"after the overload ended the server did not accept a valid client again within "
        f"{world.timeout(15):.0f} s; last answers: {answers[-3:]}",
    )


def _reject(world: World, name: str) -> Frame | None:
    device = world.device(name)
    return world.notes.get(f"answer {name}#{device.connections}")


@then(text("the reject carries retry_after_s [{req:req}]"))
def reject_retry_after(world: World, req: str) -> None:
    frame = _reject(world, "C")
    value = frame.get("retry_after_s") if frame else None
    world.check(
        req,
        isinstance(value, int | float) and value >= 0,
        f"an overloaded reject should carry retry_after_s; got {value!r}",
    )


@then(text("the reject lists the configured alternate servers [{req:req}]"))
def reject_alternates(world: World, req: str) -> None:
    frame = _reject(world, "C")
    expected = set(world.ixit.overload.alternates)
    if not expected:
        world.check(req, True, "the IXIT configures no alternate servers: none to list")
        return
    listed = frame.get("servers") if frame else None
    world.check(
        req,
        isinstance(listed, list) and expected <= set(listed),
        f"the reject should list the configured alternates {sorted(expected)}; got {listed!r}",
    )


@when(text('the server app pushes {count:n} notifications to app "{app:q}" of client "{name:q}"'))
def pushes_many(world: World, count: int, app: str, name: str) -> None:
    world.notes["overload pushes"] = [
        push_to(world, f"under load {n}", app, name) for n in range(1, count + 1)
    ]


@then(text("every push was answered, with 201 unless the push path is overloaded [{req:req}]"))
def pushes_answered(world: World, req: str) -> None:
    statuses = [p.answer.status for p in world.notes["overload pushes"]]
    if world.ixit.overload.method == "max_sessions":
        # Being full refuses new sessions only: the clients held keep getting pushes.
        world.check(
            req,
            all(s == 201 for s in statuses),
            f"pushes to a held client while the server was full were answered {statuses}; "
            "a full server still accepts them (docs/protocol.md 5.3, 5.5)",
        )
    else:  # the IXIT's command may overload the push path too: then 503 is right
        world.check(
            req,
            all(s in (201, 503) for s in statuses),
            f"pushes while overloaded were answered {statuses}; expected 201 or 503 each",
        )


@then(
    text(
        'client "{name:q}" receives "{first:q}" and every notification accepted with 201 '
        "[{req:req}]"
    )
)
def receives_accepted(world: World, name: str, first: str, req: str) -> None:
    device = world.device(name)
    labels = [first] + [p.label for p in world.notes["overload pushes"] if p.answer.status == 201]
    for label in labels:
        frame = device.notification(label)
        frame = world.found(
            req,
            frame,
            f"client {name} did not receive {label!r}, accepted with 201, while the server "
            f"was overloaded: {describe(None, device.connection().closed)}",
        )
        assert frame is not None
        device.ack(frame.get("id"))


@then(text('the health endpoint reports "overloaded" with status 503 [{req:req}]'))
def health_overloaded(world: World, req: str) -> None:
    answer = world.http().request("GET", "/v1/health", channel="health")
    world.check(
        req,
        answer.status == 503 and answer.json_object.get("status") == "overloaded",
        f"GET /v1/health while overloaded: {answer.status} {answer.text[:200]}; "
        "expected 503 {status: overloaded}",
    )


# --- shedding ------------------------------------------------------------------------


@when(text("clients fill the server above its high watermark"))
def fill_above_high_water(world: World) -> None:
    wanted = world.ixit.shed_sessions
    world.precondition(wanted > 0, "the IXIT gives no [shedding] sessions")
    identities = _fillers(world)
    for _ in range(wanted):
        device = _filler(world, next(identities))
        device.open()
        device.hello()
        frame = device.answer_to_hello()
        if frame is not None and frame.type == "reject":
            break
    world.notes["shed from"] = time.monotonic()


@then(
    text('sessions are shed with redirect reason "{reason:q}" and close code {code:n} [{req:req}]')
)
def sessions_shed(world: World, reason: str, code: int, req: str) -> None:
    rate = world.ixit.shed_rate_per_s or 1.0
    quiet = world.timeout(2 / rate + 1)
    sessions = [d for d in world.fillers if d.welcome is not None]
    shed: list[tuple[float, Device, Frame]] = []
    timeout = world.timeout(RESPONSE_S + 2 / rate)
    while True:
        gone = {id(device) for _, device, _ in shed}
        waiting = [d.connection() for d in sessions if id(d) not in gone]
        found = wait_any(waiting, lambda f: f.type == "redirect", timeout)
        if found is None:
            for connection in waiting:
                world.not_lost(connection, "a redirect")
            break
        connection, frame = found
        device = next(d for d in sessions if d.conn is connection)
        world.judge_frame(device.name, frame)
        shed.append((frame.at, device, frame))
        timeout = quiet
    world.notes["shed"] = shed
    world.check(
        req,
        bool(shed),
        f"{len(sessions)} sessions above the high watermark and none was shed with redirect",
    )
    for _, device, frame in shed:
        world.check(
            req,
            frame.get("reason") == reason,
            f"{device.name} was shed with reason {frame.get('reason')!r}, expected {reason!r}",
        )
        closed = device.wait_closed(RESPONSE_S)
        closed = world.found(
            req,
            closed,
            f"after redirect the server must close with {code}: "
            + (f"{closed.code} {closed.reason}" if closed else "it did not close"),
            lambda c: c.code == code,
        )


@then(text("sessions are shed no faster than the configured rate [{req:req}]"))
def shed_rate(world: World, req: str) -> None:
    rate = world.ixit.shed_rate_per_s
    shed = sorted(world.notes["shed"], key=lambda s: s[0])
    if rate <= 0:
        world.check(req, True, "the IXIT gives no shed rate; the bound is not measured")
        return
    start = shed[0][0]
    burst = max(1.0, rate)
    for k, (at, _, _) in enumerate(shed):
        world.check(
            req,
            k + 1 <= rate * (at - start + 0.25) + burst,
            f"{k + 1} sessions shed within {at - start:.2f} s: faster than "
            f"{rate}/s (with a burst of {burst:.0f})",
        )
