"""Client mode: the refusals the suite's servers sent, and the rule that a step judging what
the client did after a refusal judges nothing when no refusal happened on the wire.

A client that never contacted the refusing server (it went elsewhere first, or nowhere)
never met the event the requirement is about: its scenario is blocked (ERROR, "not
certified"), never a FAIL naming an event that did not happen.
"""

from __future__ import annotations

from conformance.client_stage import Stage
from conformance.driver.aoi2_server import SuiteServer
from conformance.driver.server_connection import ServerConnection

CREDENTIAL_REASONS = ("invalid_credentials", "forbidden")


def refusals(server: SuiteServer, reasons: tuple[str, ...] | None = None) -> list[ServerConnection]:
    """The connections on which ``server`` sent a reject (for one of ``reasons``); to be
    called on the stage's event loop (in ``stage.wait`` or ``stage.read``)."""
    return [
        c
        for c in server.connections
        if c.answer is not None
        and c.answer.kind == "reject"
        and c.answered_at is not None
        and (reasons is None or c.answer.reason in reasons)
    ]


def describe_answer(conn: ServerConnection) -> str:
    return conn.answer.describe() if conn.answer is not None else "no answer"


def first_refusal(
    stage: Stage, name: str, what: str, reasons: tuple[str, ...] | None = None
) -> ServerConnection:
    """The first connection on which server ``name`` refused the client (for one of
    ``reasons``), waiting for it; without one, stop the scenario, judging nothing: ``what``
    follows a refusal that never happened on the wire. The wait ends early once another
    server holds a session with the client."""
    server = stage.servers[name]
    others = [s for n, s in stage.servers.items() if n != name]

    def refused_or_settled() -> ServerConnection | bool | None:
        first = next(iter(refusals(server, reasons)), None)
        return first or any(s.current() is not None for s in others) or None

    stage.wait(refused_or_settled, stage.patience())
    refused = stage.read(lambda: next(iter(refusals(server, reasons)), None))
    if refused is None:
        hellos = stage.read(lambda: len(server.hellos()))
        stage.world.precondition(
            False,
            f"server {name} never refused the AOI Client ({hellos} hello(s) to it; "
            f"{_connections(stage)}): {what} cannot be judged",
        )
    assert refused is not None and refused.answered_at is not None
    return refused


def refused_somewhere(stage: Stage, what: str) -> str:
    """Which servers refused the client, and how often (for an explanation); when none
    did, stop the scenario, judging nothing: ``what`` follows a refusal."""
    counts = stage.read(lambda: {n: len(refusals(s)) for n, s in stage.servers.items()})
    refused = {n: k for n, k in counts.items() if k}
    stage.world.precondition(
        bool(refused),
        f"no server refused the AOI Client ({_connections(stage)}): {what} cannot be judged",
    )
    return ", ".join(f"{k} by server {n}" for n, k in refused.items())


def _connections(stage: Stage) -> str:
    tried = stage.read(lambda: {n: len(s.connections) for n, s in stage.servers.items()})
    return "connections per server: " + ", ".join(f"{n} {k}" for n, k in tried.items())
