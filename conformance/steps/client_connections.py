"""Client mode, how the AOI Client connects to the suite's AOI Servers: the subprotocol and
hello, the policy fetch, which servers it tries and in what order, TLS, no failover after a
credential refusal, and sessions held with several servers at once.
"""

from __future__ import annotations

from functools import partial

from pytest_bdd import then

from conformance.client_refusals import CREDENTIAL_REASONS, describe_answer, first_refusal
from conformance.client_stage import Stage
from conformance.driver.aoi2_server import SuiteServer
from conformance.driver.frames import Frame
from conformance.driver.server_connection import ServerConnection
from conformance.steps import text
from conformance.steps.client_setup import names


@then(
    text(
        'server "{name:q}" was offered the subprotocol "{offer:q}" and got hello with '
        "version {version:n} [{req:req}]"
    )
)
def offered_and_hello(stage: Stage, name: str, offer: str, version: int, req: str) -> None:
    server = stage.servers[name]
    conn = stage.wait(
        lambda: next((c for c in server.connections if c.hello is not None), None),
        stage.patience(),
    )
    conn = stage.world.found(req, conn, f"server {name} got no hello")
    stage.world.check(
        req,
        offer in (conn.offered or []),
        f"the AOI Client offered the subprotocols {conn.offered}, not {offer!r}",
    )
    assert conn.hello is not None
    stage.world.check(
        req,
        conn.hello.get("version") == version,
        f"hello.version {conn.hello.get('version')!r}, expected {version}",
    )


@then(
    text(
        'the AOI Client closes the connection to server "{name:q}" without sending hello '
        "[{req:req}]"
    )
)
def closes_without_hello(stage: Stage, name: str, req: str) -> None:
    server = stage.servers[name]
    conn = stage.wait(
        lambda: next(
            (c for c in server.connections if c.offered is not None and c.closed is not None),
            None,
        ),
        stage.patience(),
    )
    upgraded = [c for c in server.connections if c.offered is not None]
    conn = stage.world.found(
        req,
        conn,
        f"the AOI Client kept open a connection on which no subprotocol was selected "
        f"({len(upgraded)} upgraded connection(s))",
    )
    stage.world.check(
        req,
        not conn.frames,
        f"the AOI Client sent {[str(f.raw)[:100] for f in conn.frames]} on a connection "
        "without the subprotocol aoi.v1",
    )


@then(text("the AOI Client fetched the policy with its client credentials [{req:req}]"))
def fetched_policy(stage: Stage, req: str) -> None:
    endpoint = stage.providers[0].endpoint
    fetch = stage.wait(lambda: next(iter(endpoint.served()), None), stage.timeout())
    tried = [(f.status, f.client_id) for f in endpoint.fetches]
    stage.world.found(
        req,
        fetch,
        f"the AOI Client did not fetch its policy with its credentials (Basic "
        f"{stage.target.client_id}:...); requests: {tried}",
    )


@then(text('servers "{listed:q}" received hellos in that order [{req:req}]'))
def hellos_in_order(stage: Stage, listed: str, req: str) -> None:
    order = names(listed)
    for name in order:
        server = stage.servers[name]
        first = stage.wait(partial(_first_hello, server), stage.patience())
        stage.world.found(req, first, f"server {name} got no hello: the client did not try it")
    firsts = [stage.read(partial(_first_hello_at, stage, n)) for n in order]
    arrived = sorted(order, key=lambda n: firsts[order.index(n)])
    stage.world.check(
        req, arrived == order, f"first hellos arrived in the order {arrived}, not {order}"
    )


@then(text('server "{name:q}", which the policy does not list, is never contacted [{req:req}]'))
def stranger_untouched(stage: Stage, name: str, req: str) -> None:
    count = stage.read(lambda: len(stage.servers[name].connections))
    stage.world.check(
        req,
        count == 0,
        f"the AOI Client connected {count} time(s) to server {name}, which only a reject "
        "suggested; its policy does not list it",
    )


@then(text('server "{name:q}" is never contacted [{req:req}]'))
def untouched(stage: Stage, name: str, req: str) -> None:
    count = stage.read(lambda: len(stage.servers[name].connections))
    stage.world.check(req, count == 0, f"the AOI Client connected {count} time(s) to server {name}")


@then(
    text(
        'the AOI Client tries server "{name:q}" again without contacting server "{other:q}" '
        "[{req:req}]"
    )
)
def retries_same(stage: Stage, name: str, other: str, req: str) -> None:
    server, elsewhere = stage.servers[name], stage.servers[other]
    what = "whether the client fails over after a credential refusal"
    refused = first_refusal(stage, name, what, CREDENTIAL_REASONS)
    since = refused.answered_at
    assert since is not None

    def failover() -> list[ServerConnection]:
        return [c for c in elsewhere.connections if c.opened_at > since]

    stage.wait(lambda: len(server.hellos()) >= 2 or bool(failover()), stage.patience())
    moved = stage.read(failover)
    stage.world.check(
        req,
        not moved,
        f"after a credential refusal by server {name} ({describe_answer(refused)}) the AOI "
        f"Client failed over to server {other}: {len(moved)} connection(s), the first "
        f"{moved[0].opened_at - since if moved else 0:.3f} s after the refusal",
    )
    stage.world.check(
        req,
        len(stage.read(server.hellos)) >= 2,
        f"the AOI Client did not try server {name} again after its credential refusal "
        f"({describe_answer(refused)})",
    )


@then(
    text('server "{name:q}" gets its first hello and no other within {s:num} seconds [{req:req}]')
)
def asked_once(stage: Stage, name: str, s: float, req: str) -> None:
    server = stage.servers[name]
    first = stage.wait(lambda: next(iter(server.hellos()), None), stage.patience())
    stage.world.found(req, first, f"server {name} got no hello: the client did not try it")
    again = stage.wait(lambda: len(server.hellos()) >= 2 or None, stage.world.timeout(s))
    hellos = stage.read(server.hellos)
    stage.world.check(
        req,
        again is None,
        f"the AOI Client said hello to server {name} again {hellos[-1].at - hellos[0].at:.2f} s "
        f"after the first (versions {hellos[0].get('version')} and {hellos[-1].get('version')})",
    )


@then(
    text(
        'the AOI Client opens a connection to server "{name:q}" but never sends it hello '
        "[{req:req}]"
    )
)
def tls_refused(stage: Stage, name: str, req: str) -> None:
    server = stage.servers[name]
    conn = stage.wait(
        lambda: next((c for c in server.connections if c.closed is not None), None),
        stage.patience(),
    )
    conn = stage.world.found(
        req,
        conn,
        f"the AOI Client made no connection to server {name} that ended "
        f"({len(server.connections)} open)",
    )
    hellos = stage.read(server.hellos)
    stage.world.check(
        req,
        not hellos and conn.offered is None,
        f"the AOI Client went on over TLS with a certificate it cannot verify: "
        f"{'hello sent' if hellos else 'WebSocket upgrade sent'}",
    )


@then(
    text(
        'the AOI Client holds sessions with servers "{one:q}" and "{two:q}" at the same time '
        "[{req:req}]"
    )
)
def holds_both(stage: Stage, one: str, two: str, req: str) -> None:
    a, b = stage.servers[one], stage.servers[two]
    both = stage.wait(
        lambda: (a.current(), b.current()) if a.current() and b.current() else None,
        stage.patience(),
    )
    stage.world.found(
        req,
        both,
        f"the AOI Client did not hold sessions with servers {one} and {two} at once "
        f"(open: {one}={a.current() is not None}, {two}={b.current() is not None})",
    )


@then(text('the session with server "{name:q}" stayed open throughout [{req:req}]'))
def stayed_open(stage: Stage, name: str, req: str) -> None:
    server = stage.servers[name]
    seen = stage.read(lambda: [(c.n, c.hello is not None, c.closed) for c in server.connections])
    sessions = [s for s in seen if s[1]]
    stage.world.check(
        req,
        len(sessions) == 1 and sessions[0][2] is None,
        f"the session with server {name} did not stay open: sessions (n, hello, closed) {seen}",
    )


def _first_hello(server: SuiteServer) -> Frame | None:
    return next(iter(server.hellos()), None)


def _first_hello_at(stage: Stage, name: str) -> float:
    return stage.hellos(name)[0].at
