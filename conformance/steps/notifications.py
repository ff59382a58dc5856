"""Steps of AOI-2 delivery: notify, ack, redelivery, and the absence of a notification.

Absence is never judged by waiting for nothing: the suite pushes a marker after the
notification that must not come, waits for the marker, and then looks at what arrived.
"""

from __future__ import annotations

import secrets

from pytest_bdd import step, then, when

from conformance.device import Device, describe
from conformance.driver.frames import Frame
from conformance.steps import text
from conformance.steps.pushes import push_to
from conformance.world import World


def _expect(world: World, device: Device, label: str, req: str | None) -> Frame:
    frame = device.notification(label)
    explanation = (
        f"client {device.name} did not receive the notification {label!r}: "
        f"{describe(None, device.connection().closed)}"
    )
    if req is not None:
        return world.found(req, frame, explanation)
    world.precondition(frame is not None, explanation)
    assert frame is not None
    return frame


@then(text('client "{name:q}" receives the notification "{label:q}" [{req:req}]'))
def receives(world: World, name: str, label: str, req: str) -> None:
    device = world.device(name)
    frame = _expect(world, device, label, req)
    push = world.pushes.get(label)
    if push is not None and push.id is not None:
        world.check(
            req,
            frame.get("id") == push.id,
            f"notify id {frame.get('id')!r} is not the id {push.id!r} given at acceptance",
        )
    device.ack(frame.get("id"))


@then(text('client "{name:q}" receives the notification "{label:q}" for app "{app:q}" [{req:req}]'))
def receives_for_app(world: World, name: str, label: str, app: str, req: str) -> None:
    device = world.device(name)
    frame = _expect(world, device, label, req)
    world.check(
        req,
        frame.get("token") == device.tokens[app] and frame.get("app_id") == world.app_id(app),
        f"notify for app {app!r} carries token {frame.get('token')!r} and app_id "
        f"{frame.get('app_id')!r}; expected {device.tokens[app]!r} and {world.app_id(app)!r}",
    )
    device.ack(frame.get("id"))


@then(text('client "{name:q}" receives the notification "{label:q}" as pushed [{req:req}]'))
def receives_as_pushed(world: World, name: str, label: str, req: str) -> None:
    device = world.device(name)
    frame = _expect(world, device, label, req)
    push = world.pushes[label]
    world.check(req, not frame.problems, f"notify is not valid AOI-2: {'; '.join(frame.problems)}")
    app = push.app_alias or "one"
    sent = push.body or {}
    expected = {
        "id": push.id,
        "token": device.tokens[app],
        "app_id": world.app_id(app),
        "payload": label,
        "priority": sent.get("priority", "normal"),
    }
    if "collapse_key" in sent:
        expected["collapse_key"] = sent["collapse_key"]
    body = push.answer.json_object
    wrong = {k: frame.get(k) for k, v in expected.items() if frame.get(k) != v}
    world.check(req, not wrong, f"notify differs from the push in {wrong} (expected {expected})")
    world.check(
        req,
        frame.get("ttl_s") is not None and frame.get("ttl_s") <= body.get("ttl_s", 600),
        f"notify ttl_s {frame.get('ttl_s')!r} exceeds the pushed one",
    )
    world.notes[f"notify {label}"] = frame


@when(text('client "{name:q}" receives the notification "{label:q}" without acking it'))
def receives_unacked(world: World, name: str, label: str) -> None:
    device = world.device(name)
    world.notes[f"notify {label}"] = _expect(world, device, label, None)


@step(text('client "{name:q}" receives and acks the notification "{label:q}"'))
def receives_and_acks(world: World, name: str, label: str) -> None:
    device = world.device(name)
    frame = _expect(world, device, label, None)
    device.ack(frame.get("id"))


@when(text('client "{name:q}" acks the notification "{label:q}"'))
def acks(world: World, name: str, label: str) -> None:
    device = world.device(name)
    frame = world.notes.get(f"notify {label}") or _expect(world, device, label, None)
    device.ack(frame.get("id"))


@then(
    text(
        'client "{name:q}" receives the notification "{label:q}" again with the same id [{req:req}]'
    )
)
def receives_again(world: World, name: str, label: str, req: str) -> None:
    device = world.device(name)
    first: Frame = world.notes[f"notify {label}"]
    frame = _expect(world, device, label, req)
    world.check(
        req,
        frame.get("id") == first.get("id"),
        f"redelivered with id {frame.get('id')!r}, first delivered as {first.get('id')!r}",
    )
    device.ack(frame.get("id"))


@then(text('client "{name:q}" receives that payload intact [{req:req}]'))
def receives_payload(world: World, name: str, req: str) -> None:
    device = world.device(name)
    payload: str = world.notes["payload"]
    frame = device.notification(payload)
    frame = world.found(
        req,
        frame,
        f"the {len(payload.encode())}-byte payload did not arrive intact: "
        f"{describe(frame, device.connection().closed)}",
        lambda f: f.get("payload") == payload,
    )


@then(text('client "{name:q}" receives "{first:q}" before "{a:q}" and "{b:q}" [{req:req}]'))
def receives_in_order(world: World, name: str, first: str, a: str, b: str, req: str) -> None:
    device = world.device(name)
    wanted = {first, a, b}
    order: list[str] = []
    while len(order) < len(wanted):
        frame = device.take(
            lambda f: f.type == "notify" and f.get("payload") in wanted - set(order)
        )
        world.precondition(
            frame is not None,
            f"client {name} received only {order} of {sorted(wanted)} after resuming",
        )
        assert frame is not None
        order.append(frame.get("payload"))
        device.ack(frame.get("id"))
    world.check(
        req,
        order[0] == first,
        f"the queued notifications arrived in the order {order}; {first!r} (high) should be first",
    )


def _marker(world: World, device: Device, app: str) -> None:
    """Push a marker after what must not come, and wait for it (then ack it)."""
    marker = f"marker {secrets.token_hex(4)}"
    push = push_to(world, marker, app, device.name)
    world.precondition(push.answer.status == 201, f"the marker push got {push.answer.status}")
    device.ack(_expect(world, device, marker, None).get("id"))


@then(text('client "{name:q}" receives no notification "{label:q}" [{req:req}]'))
def receives_none(world: World, name: str, label: str, req: str) -> None:
    device = world.device(name)
    world.precondition(bool(device.tokens), f"client {name} has no registered app for a marker")
    app = next(iter(device.tokens))
    _marker(world, device, app)
    got = device.received(label)
    world.check(
        req,
        not got,
        f"client {name} received {label!r} ({len(got)} time(s)) before the marker pushed after it",
    )


@then(text('client "{name:q}" receives no other copy of "{label:q}" [{req:req}]'))
def receives_no_copy(world: World, name: str, label: str, req: str) -> None:
    device = world.device(name)
    _marker(world, device, next(iter(device.tokens)))
    got = device.received(label)
    world.check(req, len(got) == 1, f"client {name} received {label!r} {len(got)} times")


@then(text('a push to app "{app:q}" of client "{name:q}" still reaches it [{req:req}]'))
def push_still_reaches(world: World, app: str, name: str, req: str) -> None:
    device = world.device(name)
    label = f"still there ({app}) {secrets.token_hex(4)}"
    push = push_to(world, label, app, name)
    world.check(
        req,
        push.answer.status == 201,
        f"a push to the token of app {app!r} was refused: {push.answer.status} "
        f"{push.answer.text[:200]}",
    )
    frame = _expect(world, device, label, req)
    device.ack(frame.get("id"))
