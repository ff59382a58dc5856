"""Steps of a session taken over by another connection: close 4409 (docs/protocol.md 2.9,
2.12), the AOI Server closing the older connection and the AOI Client not resuming from it."""

from __future__ import annotations

from pytest_bdd import then, when

from conformance.client_stage import Stage
from conformance.device import RESPONSE_S
from conformance.steps import text
from conformance.steps.client_servers import session_of
from conformance.steps.sessions import resumes
from conformance.world import World

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


# --- client mode: the AOI Client whose connection is closed with 4409 --------------------------


@when(text('server "{name:q}" closes the session with 4409, as when another connection resumed it'))
def takes_over(stage: Stage, name: str) -> None:
    server, conn = session_of(stage, name)
    session = stage.read(lambda: conn.session.id if conn.session is not None else None)
    stage.world.precondition(
        server.take_over(conn),
        f"the AOI Client's session with server {name} ended before the suite could close it "
        f"with {TAKEN_OVER}",
    )
    stage.notes[f"taken over {name}"] = (conn.n, session)


@then(
    text('no later hello of the AOI Client to server "{name:q}" resumes that session [{req:req}]')
)
def not_resumed_after_4409(stage: Stage, name: str, req: str) -> None:
    """Judged on the client's next hello to the server (and any that came with it); no hello
    at all within the policy's largest backoff judges nothing."""
    server = stage.servers[name]
    taken, session = stage.notes[f"taken over {name}"]
    policy = stage.policy
    window = stage.patience(policy.max_s + policy.initial_s + stage.target.tolerances.backoff_s)

    def later() -> list[str | None] | None:
        asked = [c.hello.get("session") for c in server.connections if c.n > taken and c.hello]
        return asked or None

    asked = stage.wait(later, window)
    stage.world.precondition(
        asked is not None,
        f"the AOI Client sent no hello to server {name} within {window:.1f} s of the close "
        f"{TAKEN_OVER}: whether it resumes from the obsolete connection cannot be judged",
    )
    assert asked is not None
    stage.world.check(
        req,
        session not in asked,
        f"after server {name} closed the session {session!r} with {TAKEN_OVER}, the AOI Client "
        f"resumed it: its hello(s) there carried session {asked!r}",
    )
