"""Client mode, what the AOI Client tells its apps about their servers: connection_failed
(with fallback direct), registration_changed (with the new server's token and endpoint),
connection_restored, and nothing at all when another app's server is lost.
"""

from __future__ import annotations

from pytest_bdd import then

from conformance.client_refusals import refused_somewhere
from conformance.client_stage import Stage
from conformance.steps import text
from conformance.steps.client_apps import describe_app, matches_server


def _failed(stage: Stage, alias: str, reason: str, req: str) -> None:
    app = stage.app(alias)
    frame = stage.wait(lambda: next(iter(app.frames("connection_failed")), None), stage.patience())
    after = ""
    if frame is None and reason != "unreachable":  # an unreachable server leaves no trace
        after = f" after refusals ({refused_somewhere(stage, 'a connection_failed')})"
    frame = stage.world.found(
        req,
        frame,
        f"app {alias} was not told connection_failed{after}: it got {describe_app(app)}",
    )
    stage.world.check(
        req,
        frame.get("reason") == reason and frame.get("fallback") == "direct",
        f"app {alias} got {frame.raw!s}; expected reason {reason!r} and fallback direct",
    )


@then(
    text('app "{alias:q}" receives connection_failed "{reason:q}" with fallback direct [{req:req}]')
)
def receives_failed(stage: Stage, alias: str, reason: str, req: str) -> None:
    _failed(stage, alias, reason, req)


@then(
    text('app "{alias:q}" is told connection_failed "{reason:q}" with fallback direct [{req:req}]')
)
def told_failed(stage: Stage, alias: str, reason: str, req: str) -> None:
    _failed(stage, alias, reason, req)


@then(
    text(
        'apps "{one:q}" and "{two:q}" receive connection_failed "{reason:q}" with fallback '
        "direct [{req:req}]"
    )
)
def apps_receive_failed(stage: Stage, one: str, two: str, reason: str, req: str) -> None:
    _failed(stage, one, reason, req)
    _failed(stage, two, reason, req)


def _changed(stage: Stage, alias: str, name: str, reason: str, req: str) -> None:
    app = stage.app(alias)
    server_id = stage.servers[name].server_id
    frame = stage.wait(
        lambda: next(
            (f for f in app.frames("registration_changed") if f.get("server_id") == server_id),
            None,
        ),
        stage.patience(),
    )
    if not stage.world.check(  # a SHOULD (a return to the preferred server) goes on here
        req,
        frame is not None,
        f"app {alias} got no registration_changed naming server {name}: it got {describe_app(app)}",
    ):
        return
    assert frame is not None
    problem = matches_server(stage, frame, app, name)
    if not problem and frame.get("reason") != reason:
        problem = f"reason {frame.get('reason')!r}, expected {reason!r}"
    stage.world.check(req, not problem, f"registration_changed of app {alias}: {problem}")


@then(
    text(
        'apps "{one:q}" and "{two:q}" receive registration_changed with the token and endpoint '
        'of server "{name:q}" [{req:req}]'
    )
)
def apps_receive_changed(stage: Stage, one: str, two: str, name: str, req: str) -> None:
    _changed(stage, one, name, "reallocated", req)
    _changed(stage, two, name, "reallocated", req)


@then(
    text(
        'app "{alias:q}" receives registration_changed "{reason:q}" with the token and '
        'endpoint of server "{name:q}" [{req:req}]'
    )
)
def receives_changed(stage: Stage, alias: str, reason: str, name: str, req: str) -> None:
    _changed(stage, alias, name, reason, req)


@then(
    text(
        'app "{alias:q}" is told connection_failed once, then connection_restored by server '
        '"{name:q}" [{req:req}]'
    )
)
def failed_then_restored(stage: Stage, alias: str, name: str, req: str) -> None:
    app = stage.app(alias)
    server_id = stage.servers[name].server_id
    restored = stage.wait(
        lambda: next(
            (f for f in app.frames("connection_restored") if f.get("server_id") == server_id),
            None,
        ),
        stage.patience(),
    )
    restored = stage.world.found(
        req,
        restored,
        f"app {alias} got no connection_restored naming server {name}: it got {describe_app(app)}",
    )
    failed = [f for f in stage.read(app.frames) if f.type == "connection_failed"]
    before = [f for f in failed if f.seq < restored.seq]
    stage.world.check(
        req,
        len(before) == 1,
        f"app {alias} was told connection_failed {len(before)} times before "
        "connection_restored; once per outage, not once per round",
    )


@then(text('app "{alias:q}" was told nothing about the loss of server "{name:q}" [{req:req}]'))
def told_nothing(stage: Stage, alias: str, name: str, req: str) -> None:
    app = stage.app(alias)
    told = [
        str(f.raw)[:200]
        for f in stage.read(app.frames)
        if f.type in ("registration_changed", "connection_failed", "connection_restored")
    ]
    stage.world.check(
        req,
        not told,
        f"app {alias}, served by another server, was disturbed when server {name} was lost: {told}",
    )
