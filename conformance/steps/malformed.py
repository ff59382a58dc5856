"""Steps of malformed input: bad frames, their error codes, and the sessions around them."""

from __future__ import annotations

import json

from pytest_bdd import then, when

from conformance.steps import text
from conformance.world import World, describe


@when(text('client "{name:q}" sends the text {frame}'))
def sends_text(world: World, name: str, frame: str) -> None:
    world.device(name).connection().send_text(frame)


@when(text('client "{name:q}" sends a binary frame'))
def sends_binary(world: World, name: str) -> None:
    world.device(name).connection().send_bytes(b"\x00\xffAOI\x00")


@when(text('client "{name:q}" sends a text of {size:n} bytes'))
def sends_oversized(world: World, name: str, size: int) -> None:
    head = '{"type": "ping", "pad": "'
    frame = head + "x" * (size - len(head) - 2) + '"}'
    assert len(frame.encode()) == size and json.loads(frame)
    world.device(name).connection().send_text(frame)


@when(text('client "{name:q}" connects and sends the text {frame} before hello'))
def sends_before_hello(world: World, name: str, frame: str) -> None:
    device = world.device(name)
    device.open()
    device.connection().send_text(frame)


@then(text('client "{name:q}" receives an error "{code:q}" that is {fatality} [{req:req}]'))
def receives_error(world: World, name: str, code: str, fatality: str, req: str) -> None:
    device = world.device(name)
    frame = device.take(lambda f: f.type == "error")
    frame = world.found(
        req,
        frame,
        f"expected error{{code: {code}}}: {describe(frame, device.connection().closed)}",
        lambda f: f.get("code") == code,
    )
    fatal = fatality == "fatal"
    world.check(
        req,
        frame.get("fatal") is fatal,
        f"error {code} must have fatal={str(fatal).lower()}: {frame.raw!s:.300}",
    )


@then(text('client "{name:q}" is closed with code {code:n} [{req:req}]'))
def is_closed(world: World, name: str, code: int, req: str) -> None:
    world.device(name).closed_with(req, code)
