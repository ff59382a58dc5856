"""Client mode, the apps' side: what the suite's apps do on AOI-1 and what they receive.

Each app (``app "one"``) has its own AOI-1 connection to the client under test; its app id
is ``org.aoi.conformance.<alias>``. A notification is named by its payload (its label).
What the client tells apps about their servers (connection_failed, registration_changed,
connection_restored) is judged in :mod:`conformance.steps.client_app_notices`, the AOI-1
port itself in :mod:`conformance.steps.client_aoi1`.
"""

from __future__ import annotations

from typing import Any

from pytest_bdd import given, then, when

from conformance.client_stage import App, Stage
from conformance.client_target import SECOND_PROVIDER
from conformance.driver.frames import Frame
from conformance.steps import text

AFTER_S = 0.5  # after the garbage was answered, for a client that dies of it a little later


def register(stage: Stage, alias: str, provider: str | None = None) -> App:
    app = stage.app(alias)
    app.provider = provider
    message: dict[str, Any] = {"type": "app_register", "app_id": app.app_id}
    if provider is not None:
        message["provider"] = provider
    stage.send_app(app, message)
    return app


def served_by(stage: Stage, app: App, name: str) -> Frame | None:
    """The app_registered or registration_changed that binds ``app`` to server ``name``."""
    server_id = stage.servers[name].server_id
    return stage.wait(
        lambda: next(
            (
                f
                for f in reversed(app.frames())
                if f.type in ("app_registered", "registration_changed")
                and f.get("server_id") == server_id
            ),
            None,
        ),
        stage.patience(),
    )


def describe_app(app: App) -> str:
    """What the app got so far, for explanations."""
    shown = [str(f.raw)[:200] for f in app.frames()[-4:]]
    return "; ".join(shown) if shown else "nothing"


def first_frame(
    stage: Stage, app: App, kind: str, req: str, missing: str, timeout: float | None = None
) -> Frame:
    """The first ``kind`` message ``app`` got, waiting up to ``timeout`` (by default the
    client's patience); without one, ``req`` fails with ``missing`` and what the app got."""
    frame = stage.wait(
        lambda: next(iter(app.frames(kind)), None),
        stage.patience() if timeout is None else timeout,
    )
    return stage.world.found(req, frame, f"{missing}: it got {describe_app(app)}")


def matches_server(stage: Stage, frame: Frame, app: App, name: str) -> str:
    """Why ``frame`` does not carry a token and endpoint of server ``name`` ('' if it does)."""
    server = stage.servers[name]
    issued = stage.read(lambda: server.tokens_issued(app.app_id))
    token, endpoint = frame.get("token"), frame.get("endpoint")
    if token not in issued:
        return f"token {token!r} is not one server {name} issued for {app.app_id} ({issued})"
    if endpoint != server.endpoint_of(token):
        return f"endpoint {endpoint!r}, but server {name} gave {server.endpoint_of(token)!r}"
    if frame.get("server_id") != server.server_id:
        return f"server_id {frame.get('server_id')!r}, expected {server.server_id!r}"
    return ""


# --- what the apps do ----------------------------------------------------------------------


@when(text('app "{alias:q}" registers'))
def app_registers(stage: Stage, alias: str) -> None:
    register(stage, alias)


@when(text('app "{alias:q}" connects to the AOI-1 path "{path:q}"'))
def app_connects_at(stage: Stage, alias: str, path: str) -> None:
    stage.app(alias).path = path


@then(text('the AOI Client accepts the connection of app "{alias:q}" [{req:req}]'))
def accepts_app(stage: Stage, alias: str, req: str) -> None:
    stage.connect_app(stage.app(alias), req)


@when(text('app "{alias:q}" registers with the second provider'))
def app_registers_second(stage: Stage, alias: str) -> None:
    register(stage, alias, SECOND_PROVIDER)


@when(text('apps "{one:q}" and "{two:q}" register on connections of their own'))
def apps_register(stage: Stage, one: str, two: str) -> None:
    register(stage, one)
    register(stage, two)


@given(text('app "{alias:q}" is registered through server "{name:q}"'))
def app_registered_through(stage: Stage, alias: str, name: str) -> None:
    app = register(stage, alias)
    frame = served_by(stage, app, name)
    stage.world.precondition(
        frame is not None,
        f"app {alias} was not registered through server {name}: it got {describe_app(app)}",
    )


@when(text('app "{alias:q}" acks "{label:q}"'))
def app_acks(stage: Stage, alias: str, label: str) -> None:
    app = stage.app(alias)
    got = stage.read(lambda: app.got(label))
    stage.world.precondition(bool(got), f"app {alias} has no notification {label!r} to ack")
    stage.send_app(app, {"type": "app_ack", "id": got[0].get("id")})


@when(text('app "{alias:q}" unregisters'))
def app_unregisters(stage: Stage, alias: str) -> None:
    app = stage.app(alias)
    registration = stage.read(app.registration)
    stage.world.precondition(registration is not None, f"app {alias} is not registered")
    assert registration is not None
    stage.notes[f"token of {alias}"] = registration.get("token")
    stage.send_app(app, {"type": "app_unregister", "app_id": app.app_id})


@when(text('app "{alias:q}" sends a message of unknown type "{kind:q}"'))
def app_sends_unknown(stage: Stage, alias: str, kind: str) -> None:
    stage.send_app(stage.app(alias), {"type": kind})


# --- what the apps receive -------------------------------------------------------------------


@then(
    text(
        'app "{alias:q}" receives app_registered with the token and endpoint of server '
        '"{name:q}" [{req:req}]'
    )
)
def receives_registered(stage: Stage, alias: str, name: str, req: str) -> None:
    app = stage.app(alias)
    frame = first_frame(stage, app, "app_registered", req, f"app {alias} got no app_registered")
    problem = matches_server(stage, frame, app, name)
    stage.world.check(req, not problem, f"app_registered of app {alias}: {problem}")


@then(text('the AOI Client still answers app "{alias:q}" when it registers [{req:req}]'))
def still_answers_app(stage: Stage, alias: str, req: str) -> None:
    """A client that died or hangs is found out here: it must still run, accept a new
    app's connection and answer its registration (served, or told the server failed)."""
    assert stage.process is not None, "suite: the AOI Client is not running"
    code = stage.process.exited()
    stage.world.check(req, code is None, f"the AOI Client exited (status {code})")
    app = stage.app(alias)
    stage.connect_app(app, req)
    stage.send_app(app, {"type": "app_register", "app_id": app.app_id})
    answer = stage.wait(
        lambda: next(
            (f for f in app.frames() if f.type in ("app_registered", "connection_failed")), None
        ),
        stage.patience(),
    )
    stage.world.check(
        req,
        answer is not None,
        f"app {alias} registering got neither app_registered nor connection_failed "
        + ("(the AOI Client exited)" if stage.process.exited() is not None else "(no answer)"),
    )
    # A client that dies of it a little later: the event to wait for is its exit.
    process = stage.process
    stage.wait(lambda: process.exited() is not None or None, stage.timeout(AFTER_S))
    code = process.exited()
    stage.world.check(req, code is None, f"the AOI Client exited (status {code}) afterwards")


@then(text('app "{alias:q}" is served by server "{name:q}" [{req:req}]'))
def is_served_by(stage: Stage, alias: str, name: str, req: str) -> None:
    app = stage.app(alias)
    frame = served_by(stage, app, name)
    frame = stage.world.found(
        req,
        frame,
        f"app {alias} was not bound to server {name} (no app_registered or "
        f"registration_changed naming it): it got {describe_app(app)}",
    )
    problem = matches_server(stage, frame, app, name)
    stage.world.check(req, not problem, f"app {alias}, {frame.type}: {problem}")


@then(text('app "{alias:q}" is served by server "{name:q}" over TLS [{req:req}]'))
def is_served_over_tls(stage: Stage, alias: str, name: str, req: str) -> None:
    app = stage.app(alias)
    frame = stage.world.found(
        req,
        served_by(stage, app, name),
        f"app {alias} was not served by server {name} over TLS: it got {describe_app(app)}; "
        f"connections: {[c.tls_error or 'ok' for c in stage.servers[name].connections]}",
    )
    problem = matches_server(stage, frame, app, name)
    stage.world.check(req, not problem, f"app {alias}, {frame.type}: {problem}")
    hello = stage.read(lambda: stage.hellos(name))
    stage.world.check(
        req,
        bool(hello) and stage.servers[name].url.startswith("wss://"),
        f"no hello reached server {name} over wss",
    )


def _receives(stage: Stage, app: App, label: str, req: str) -> Frame:
    frame = stage.wait(lambda: next(iter(app.got(label)), None), stage.timeout())
    return stage.world.found(
        req, frame, f"app {app.alias} did not receive {label!r}: it got {describe_app(app)}"
    )


@then(text('app "{alias:q}" receives "{label:q}" [{req:req}]'))
def receives(stage: Stage, alias: str, label: str, req: str) -> None:
    _receives(stage, stage.app(alias), label, req)


@then(text('app "{alias:q}" receives "{label:q}" and no other notification [{req:req}]'))
def receives_only(stage: Stage, alias: str, label: str, req: str) -> None:
    app = stage.app(alias)
    _receives(stage, app, label, req)
    payloads = [f.get("payload") for f in stage.read(app.notifications)]
    stage.world.check(
        req,
        payloads == [label],
        f"app {alias} should have received only {label!r}; it received {payloads}",
    )


@then(text('app "{alias:q}" receives "{label:q}" without "{other:q}" again [{req:req}]'))
def receives_without_again(stage: Stage, alias: str, label: str, other: str, req: str) -> None:
    app = stage.app(alias)
    _receives(stage, app, label, req)
    payloads = [f.get("payload") for f in stage.read(app.notifications)]
    stage.world.check(
        req,
        payloads.count(other) <= 1,
        f"app {alias} received {other!r} {payloads.count(other)} times (each id reaches the "
        f"app once): {payloads}",
    )


@then(
    text('app "{alias:q}" receives error "{code:q}", not fatal, and can still register [{req:req}]')
)
def app_receives_error(stage: Stage, alias: str, code: str, req: str) -> None:
    app = stage.app(alias)
    frame = first_frame(
        stage, app, "error", req, f"app {alias} got no error for a message of unknown type",
        stage.timeout(),
    )  # fmt: skip
    stage.world.check(
        req,
        frame.get("code") == code and frame.get("fatal") is False,
        f"app {alias} got {frame.raw!s}; expected a non-fatal error {code!r}",
    )
    before = len(stage.read(lambda: app.frames("app_registered")))
    stage.send_app(app, {"type": "app_register", "app_id": app.app_id})
    again = stage.wait(lambda: len(app.frames("app_registered")) > before, stage.timeout())
    closed = app.conn.closed if app.conn is not None else None
    stage.world.check(
        req,
        bool(again),
        f"after the error, app {alias} registering again got no app_registered "
        f"(connection {'closed ' + str(closed.code) if closed else 'open'})",
    )


@then(
    text('app "{alias:q}" receives app_unregistered once server "{name:q}" confirmed [{req:req}]')
)
def receives_unregistered(stage: Stage, alias: str, name: str, req: str) -> None:
    app = stage.app(alias)
    frame = first_frame(
        stage, app, "app_unregistered", req, f"app {alias} got no app_unregistered", stage.timeout()
    )
    stage.world.check(
        req, frame.get("app_id") == app.app_id, f"app_unregistered names {frame.get('app_id')!r}"
    )
