"""Steps that act on the target itself: crash and restart."""

from __future__ import annotations

import time

from pytest_bdd import when

from conformance.steps import text
from conformance.world import World

RETRY_S = 0.2  # between two health requests while the restarted target comes up


@when(text("the server crashes and restarts"))
def crashes_and_restarts(world: World) -> None:
    """Kill the target hard and start it again (the IXIT's [restart] command, or the
    embedded reference's SIGKILL); then wait until it answers HTTP again."""
    world.runtime.targets.restart(world.profile)
    world.forget_http()
    deadline = time.monotonic() + world.timeout(30)
    while True:
        answer = world.http().request("GET", "/v1/health", channel="health", answer_required=False)
        if answer.status:
            return
        world.precondition(
            time.monotonic() < deadline,
            f"the target did not answer after its restart: {answer.error}",
        )
        world.forget_http()
        time.sleep(RETRY_S)  # the restarted target listens on its own schedule
