"""Steps of a session taken over by another connection: close 4409 (docs/protocol.md 2.9,
2.12), the AOI Server closing the older connection and the AOI Client not resuming from it."""

from __future__ import annotations

from pytest_bdd import then, when

from conformance.steps import text
from conformance.steps.sessions import resumes
from conformance.world import RESPONSE_S, World

TAKEN_OVER = 4409


@when(text('client "{name:q}" resumes its session on a second connection, the first still open'))
def resumes_on_second(world: World, name: str) -> None:
    device = world.device(name)
    first = device.connection()
    world.precondition(
        first.closed is None,
        f"client {name}'s first connection closed before the second one resumed its session: "
        f"{first.closed}",
    )
    world.notes[f"first connection of {name}"] = first
    resumes(world, name)


@then(text('the first connection of client "{name:q}" is closed with 4409 [{req:req}]'))
def first_closed_taken_over(world: World, name: str, req: str) -> None:
    first = world.notes[f"first connection of {name}"]
    closed = first.wait_closed(world.timeout(RESPONSE_S))
    world.not_lost(first, "its close code")
    world.found(
        req,
        closed,
        f"the session moved to a second connection: the server must close the first with "
        f"{TAKEN_OVER}: "
        + (f"it closed with {closed.code} {closed.reason}" if closed else "it stayed open"),
        lambda c: c.by_target and c.code == TAKEN_OVER,
    )
