"""Client mode, timing: retry_after_s, backoff and jitter, measured at the suite's servers.

Every delay is measured from what the suite's server did (sent a reject, a redirect,
dropped the connection) to the arrival of the client's next connection there, on one
clock (``time.monotonic()``). The tolerances are the IXIT's ``[client.tolerances]``.

Backoff with full jitter draws each delay at random below a bound that grows with each
failure (docs/protocol.md 6.2), so single delays prove little; the checks are those a
conformant client passes with overwhelming probability and a client without backoff or
without jitter fails: no delay above the policy's largest backoff (plus one candidate
jitter); the (at least five) delays whose bound has grown to 64 x ``initial_ms`` averaging
more than 4 x ``initial_ms`` (a full-jitter client fails this with a probability below
(20/64)^5/5! = 2.5e-5; a client whose delays do not grow averages at most 2 x
``initial_ms``, with one candidate jitter); and repeated delays drawn from one bound
spreading over ``jitter_spread`` x ``initial_ms``.
"""

from __future__ import annotations

from functools import partial
from itertools import pairwise

from pytest_bdd import then, when

from conformance.client_refusals import first_refusal
from conformance.client_stage import Stage
from conformance.driver.aoi2_server import SuiteServer
from conformance.driver.server_connection import ServerConnection
from conformance.steps import text
from conformance.steps.client_servers import session_of
from conformance.verdicts import SuiteDefect

GROWN = 64  # a bound this many times initial_ms counts as grown
SHORT = 4  # a delay under this many times initial_ms counts as short (a candidate jitter
# of up to initial_ms on top of a constant initial_ms stays below it)
LATE_GAPS = 5  # delays with a grown bound needed to judge the growth


def _shown(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def _largest_delay(stage: Stage) -> float:
    policy, slack = stage.policy, stage.target.tolerances.backoff_s
    return policy.max_s + policy.initial_s + slack


def _judge_backoff(stage: Stage, req: str, arrivals: list[float], what: str) -> None:
    """Successive arrivals after failures: bounded by the policy, and growing."""
    policy = stage.policy
    gaps = [b - a for a, b in pairwise(arrivals)]
    bound = _largest_delay(stage)
    stage.world.check(
        req,
        all(g <= bound for g in gaps),
        f"{what} came {_shown(gaps)} s apart; none may exceed the policy's largest backoff "
        f"({policy.max_s} s) plus one candidate jitter ({policy.initial_s} s), with a "
        f"tolerance of {stage.target.tolerances.backoff_s} s",
    )
    late = [g for k, g in enumerate(gaps) if policy.cap_s(k) >= GROWN * policy.initial_s]
    if len(late) < LATE_GAPS:
        raise SuiteDefect(f"the scenario's backoff grows too little to judge ({len(late)} gaps)")
    mean = sum(late) / len(late)
    stage.world.check(
        req,
        mean > SHORT * policy.initial_s,
        f"{what} came {_shown(gaps)} s apart: after {len(gaps) - len(late)} failures the "
        f"backoff bound is {GROWN} x initial_ms or more, yet the last {len(late)} delays "
        f"average {mean:.3f} s, not above {SHORT} x initial_ms "
        f"({SHORT * policy.initial_s:.3f} s): the delays do not grow",
    )


def _judge_jitter(stage: Stage, req: str, delays: list[float], bound: float, what: str) -> None:
    policy = stage.policy
    spread_needed = stage.target.tolerances.jitter_spread * policy.initial_s
    stage.world.check(
        req,
        all(d <= bound for d in delays),
        f"{what}: {_shown(delays)} s; none may exceed {bound:.3f} s",
    )
    spread = max(delays) - min(delays)
    stage.world.check(
        req,
        spread >= spread_needed,
        f"{what}: {_shown(delays)} s, all within {spread * 1000:.0f} ms of each other: no "
        f"random jitter (they should spread over at least {spread_needed * 1000:.0f} ms of "
        f"the {policy.initial_s * 1000:.0f} ms bound)",
    )


def _next_connection(
    stage: Stage, name: str, after: int, timeout: float
) -> ServerConnection | None:
    server = stage.servers[name]
    return stage.wait(lambda: next((c for c in server.connections if c.n > after), None), timeout)


# --- retry_after_s ---------------------------------------------------------------------------


@then(
    text(
        'server "{name:q}" received no hello before the retry_after_s of the refusal before it '
        "[{req:req}]"
    )
)
def no_hello_before_retry_after(stage: Stage, name: str, req: str) -> None:
    server = stage.servers[name]
    slack = stage.target.tolerances.retry_after_s
    connections = stage.read(lambda: list(server.connections))
    pairs = [
        (a, b)
        for a, b in pairwise(connections)
        if a.answer is not None and a.answer.retry_after_s is not None and a.answered_at
    ]
    stage.world.precondition(
        bool(pairs), f"server {name} refused no hello that a later connection followed"
    )
    for refused, following in pairs:
        assert refused.answer is not None and refused.answered_at is not None
        wait = refused.answer.retry_after_s or 0.0
        gap = following.opened_at - refused.answered_at
        stage.world.check(
            req,
            gap >= wait - slack,
            f"the AOI Client came back to server {name} {gap:.3f} s after a reject with "
            f"retry_after_s {wait} (tolerance {slack} s)",
        )


@then(
    text(
        'server "{name:q}" receives a hello again, not before the redirect\'s retry_after_s '
        "[{req:req}]"
    )
)
def hello_after_redirect(stage: Stage, name: str, req: str) -> None:
    server = stage.servers[name]
    redirected = stage.read(
        lambda: next((c for c in server.connections if c.redirected_at is not None), None)
    )
    stage.world.precondition(redirected is not None, f"server {name} redirected no session")
    assert redirected is not None and redirected.redirected_at is not None
    wait = _redirect_retry_after(stage, name)
    slack = stage.target.tolerances.retry_after_s
    back = _next_connection(stage, name, redirected.n, stage.patience(wait + 2))
    back = stage.world.found(
        req, back, f"the AOI Client did not come back to server {name} after its redirect"
    )
    gap = back.opened_at - redirected.redirected_at
    stage.world.check(
        req,
        gap >= wait - slack,
        f"the AOI Client came back to server {name} {gap:.3f} s after a redirect with "
        f"retry_after_s {wait} (tolerance {slack} s)",
    )


def _redirect_retry_after(stage: Stage, name: str) -> float:
    value = stage.notes.get(f"redirect retry_after_s {name}")
    if not isinstance(value, int | float):
        raise SuiteDefect("the scenario redirected without retry_after_s")
    return float(value)


@when(
    text(
        'server "{name:q}" redirects the session with reason "{reason:q}" and retry_after_s {s:num}'
    )
)
def redirects_retry(stage: Stage, name: str, reason: str, s: float) -> None:
    server, conn = session_of(stage, name)
    stage.notes[f"redirect retry_after_s {name}"] = s
    server.redirect(conn, {"type": "redirect", "reason": reason, "retry_after_s": s})


# --- backoff ---------------------------------------------------------------------------------


@then(
    text(
        'server "{name:q}" receives {n:n} hellos spaced by a growing backoff within the '
        "policy's bounds [{req:req}]"
    )
)
def hellos_back_off(stage: Stage, name: str, n: int, req: str) -> None:
    server = stage.servers[name]
    found = stage.wait(lambda: len(server.hellos()) >= n, stage.patience(n * _largest_delay(stage)))
    if not found:
        first_refusal(stage, name, "retries after a refusal")
    arrivals = stage.read(lambda: [c.opened_at for c in server.connections if c.hello])
    stage.world.found(
        req,
        found or None,
        f"server {name} got {len(arrivals)} hellos, not {n}: the AOI Client stopped retrying "
        f"(gaps {_shown([b - a for a, b in pairwise(arrivals)])} s)",
    )
    _judge_backoff(stage, req, arrivals[:n], f"hellos to server {name}, refused for overload,")


@when(text('server "{name:q}" drops the connection and then closes every new connection at once'))
def drops_then_closes(stage: Stage, name: str) -> None:
    server, conn = session_of(stage, name)
    stage.read(lambda: setattr(server, "on_connect", "close"))
    stage.notes[f"dropped {name}"] = conn.n
    server.drop(conn)


@then(
    text(
        'server "{name:q}" receives {n:n} connection attempts spaced by a growing backoff '
        "within the policy's bounds [{req:req}]"
    )
)
def attempts_back_off(stage: Stage, name: str, n: int, req: str) -> None:
    server = stage.servers[name]
    dropped = stage.notes[f"dropped {name}"]
    found = stage.wait(
        lambda: len([c for c in server.connections if c.n > dropped]) >= n,
        stage.patience(n * _largest_delay(stage)),
    )
    arrivals = stage.read(lambda: [c.opened_at for c in server.connections if c.n > dropped])
    stage.world.found(
        req,
        found or None,
        f"server {name} got {len(arrivals)} connection attempts after the loss, not {n}: the "
        "AOI Client stopped trying",
    )
    _judge_backoff(stage, req, arrivals[:n], f"attempts to reconnect to server {name}")


# --- jitter ----------------------------------------------------------------------------------


def _cycles(stage: Stage, name: str, n: int, action: str) -> list[float]:
    """Redirect or drop the session ``n`` times; the delay before each comeback."""
    server = stage.servers[name]
    delays: list[float] = []
    for _ in range(n):
        _, conn = session_of(stage, name)
        if action == "redirect":
            server.redirect(conn, {"type": "redirect", "reason": "overloaded"})
            since = conn.redirected_at
        else:
            server.drop(conn)
            since = conn.dropped_at
        assert since is not None
        back = stage.wait(
            partial(_opened_after, server, conn, established=True),
            stage.patience(_largest_delay(stage)),
        )
        stage.world.precondition(
            back is not None,
            f"the AOI Client did not come back to server {name} after its {action} "
            f"(after {len(delays)} comebacks)",
        )
        first = stage.read(partial(_opened_after, server, conn))
        assert first is not None  # the established one came after it
        delays.append(first.opened_at - since)
    return delays


@when(
    text('server "{name:q}" redirects the session {n:n} times, welcoming the client back each time')
)
def redirect_cycles(stage: Stage, name: str, n: int) -> None:
    stage.notes["comebacks"] = _cycles(stage, name, n, "redirect")


@when(
    text('server "{name:q}" drops the connection {n:n} times, welcoming the client back each time')
)
def drop_cycles(stage: Stage, name: str, n: int) -> None:
    stage.notes["comebacks"] = _cycles(stage, name, n, "drop")


@then(
    text(
        "the delays before the client came back vary at random, within the policy's bounds "
        "[{req:req}]"
    )
)
def comebacks_jittered(stage: Stage, req: str) -> None:
    _judge_jitter(
        stage,
        req,
        stage.notes["comebacks"],
        _largest_delay(stage),
        "delays before the AOI Client came back after each redirect",
    )


@then(
    text(
        "each reconnection came after a random delay within the policy's first backoff [{req:req}]"
    )
)
def reconnections_jittered(stage: Stage, req: str) -> None:
    policy = stage.policy
    _judge_jitter(
        stage,
        req,
        stage.notes["comebacks"],
        policy.cap_s(0) + stage.target.tolerances.backoff_s,
        "delays before the AOI Client reconnected after each loss (the first backoff, "
        f"{policy.cap_s(0)} s, bounds each)",
    )


# --- background retries and the return to the preferred server -------------------------------


@then(
    text(
        'server "{name:q}" receives a hello after app "{alias:q}" was told connection_failed '
        "[{req:req}]"
    )
)
def retries_after_failure(stage: Stage, name: str, alias: str, req: str) -> None:
    app, server = stage.app(alias), stage.servers[name]
    first_refusal(stage, name, "a retry after the app was told connection_failed")
    failed = stage.wait(lambda: next(iter(app.frames("connection_failed")), None), stage.patience())
    stage.world.precondition(  # the failure judged by AOI-OLC-007; retries follow one told
        failed is not None,
        f"server {name} refused the AOI Client, but app {alias} was never told "
        "connection_failed: a retry after it cannot be judged",
    )
    assert failed is not None
    later = stage.wait(
        lambda: next((h for h in server.hellos() if h.at > failed.at), None), stage.patience()
    )
    stage.world.found(
        req,
        later,
        f"after app {alias} was told connection_failed the AOI Client did not try server "
        f"{name} again",
    )


@then(
    text(
        'the AOI Client returns app "{alias:q}" to server "{name:q}", not sooner than '
        "return_to_preferred_after_s [{req:req}]"
    )
)
def returns_to_preferred(stage: Stage, alias: str, name: str, req: str) -> None:
    app, preferred = stage.app(alias), stage.servers[name]
    registered = stage.read(lambda: next(iter(app.frames("app_registered")), None))
    stage.world.precondition(registered is not None, f"app {alias} was never registered")
    assert registered is not None
    elsewhere = next(
        s for s in stage.servers.values() if s.server_id == registered.get("server_id")
    )
    since = stage.read(
        lambda: next(
            c.answered_at
            for c in elsewhere.connections
            if c.session is not None and c.answered_at is not None
        )
    )
    after = float(stage.policy.return_to_preferred_after_s)

    def returned() -> ServerConnection | None:
        for conn in preferred.connections:
            asked = {f.get("app_id") for f in conn.received("register")}
            if conn.opened_at > since and app.app_id in asked:
                return conn
        return None

    back = stage.wait(returned, stage.patience(after))
    if not stage.world.check(
        req,
        back is not None,
        f"app {alias} was not registered at server {name} again within "
        f"{stage.patience(after):.0f} s of being served elsewhere, though it accepts again",
    ):
        return
    assert back is not None
    first = stage.read(lambda: next(c for c in preferred.connections if c.opened_at > since))
    slack = stage.target.tolerances.return_to_preferred_s
    stage.world.check(
        req,
        first.opened_at - since >= after - slack,
        f"the AOI Client went back to server {name} {first.opened_at - since:.3f} s after "
        f"being served elsewhere; return_to_preferred_after_s is {after} (tolerance {slack} s)",
    )


def _opened_after(
    server: SuiteServer, after: ServerConnection, *, established: bool = False
) -> ServerConnection | None:
    """The first connection to ``server`` opened after ``after`` (and established, if asked)."""
    later = (c for c in server.connections if c.n > after.n)
    return next((c for c in later if c.established or not established), None)
