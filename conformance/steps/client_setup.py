"""Client mode, setting the stage: the provider's policy, the suite's servers, the client.

Nothing here judges: these steps write the policy document the suite serves, script the
suite's AOI Servers, and start or stop the AOI Client under test (a failure to start it
is an ERROR of the run, never a verdict).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_bdd import given, step, when

from conformance.client_stage import Stage
from conformance.driver.server_connection import WELCOME, HelloAnswer
from conformance.runtime import Runtime
from conformance.steps import text
from conformance.verdicts import SuiteDefect
from conformance.world import World


@pytest.fixture
def stage(world: World, aoi_runtime: Runtime, request: pytest.FixtureRequest) -> Iterator[Stage]:
    """The client-mode stage of one scenario (servers, provisioning, apps, the client)."""
    if aoi_runtime.client is None:
        raise SuiteDefect("a client-mode step ran without an AOI Client under test")
    current = Stage(world, aoi_runtime.client, request.node.nodeid.split("::", 1)[-1])
    yield current
    current.close()


def names(listed: str) -> list[str]:
    """``"a, b, c"`` -> ``["a", "b", "c"]``."""
    return [n.strip() for n in listed.split(",") if n.strip()]


# --- the policy --------------------------------------------------------------------------


@given(text('the policy lists server "{name:q}"'))
def policy_one_server(stage: Stage, name: str) -> None:
    stage.server(name)
    stage.policy.servers = [(name, 0)]


@given(text('the policy lists servers "{listed:q}" in that order'))
def policy_ordered(stage: Stage, listed: str) -> None:
    for name in names(listed):
        stage.server(name)
    stage.policy.servers = [(n, 0) for n in names(listed)]
    stage.policy.selection = "ordered"


@given(
    text(
        'the policy lists servers "{listed:q}" with selection "{selection:q}" '
        'and priorities "{priorities:q}"'
    )
)
def policy_with_priorities(stage: Stage, listed: str, selection: str, priorities: str) -> None:
    servers, levels = names(listed), [int(p) for p in names(priorities)]
    if len(servers) != len(levels):
        raise SuiteDefect(f"{len(servers)} servers but {len(levels)} priorities")
    for name in servers:
        stage.server(name)
    stage.policy.servers = list(zip(servers, levels, strict=True))
    stage.policy.selection = selection


@given(text('a second provider\'s policy lists server "{name:q}"'))
def second_policy(stage: Stage, name: str) -> None:
    stage.server(name)
    stage.second_policy.servers = [(name, 0)]


@given(text('the policy says {setting:w} "{action:q}"'))
def policy_says(stage: Stage, setting: str, action: str) -> None:
    if setting not in ("on_overload", "on_unreachable"):
        raise SuiteDefect(f"the policy has no reallocation setting {setting!r}")
    setattr(stage.policy, setting, action)


@given(text("the policy sets max_servers_tried to {n:n}"))
def policy_max_tried(stage: Stage, n: int) -> None:
    stage.policy.max_servers_tried = n


@given(
    text(
        "the policy sets the backoff to initial_ms {initial:n}, max_ms {largest:n}, "
        "multiplier {multiplier:num}"
    )
)
def policy_backoff(stage: Stage, initial: int, largest: int, multiplier: float) -> None:
    stage.policy.backoff.update(initial_ms=initial, max_ms=largest, multiplier=multiplier)


@given(text("the policy sets return_to_preferred_after_s to {n:n}"))
def policy_return(stage: Stage, n: int) -> None:
    stage.policy.return_to_preferred_after_s = n


@given(text("the policy sets keepalive_s to {n:n}"))
def policy_keepalive(stage: Stage, n: int) -> None:
    stage.policy.keepalive_s = n


@given(text("the policy allows sessions with {n:n} servers at once"))
def policy_multi_server(stage: Stage, n: int) -> None:
    stage.policy.multi_server = {"allowed": True, "max_concurrent": n}


@given(text('the policy routes app "{app:q}" to server "{name:q}"'))
def policy_route(stage: Stage, app: str, name: str) -> None:
    stage.policy.app_routes.append({"app_id": stage.app(app).app_id, "servers": [name]})


# --- the suite's servers -----------------------------------------------------------------


def _reject(reason: str, retry_after_s: float | None = None, *alternates: str) -> HelloAnswer:
    return HelloAnswer("reject", reason, retry_after_s, alternates)


@given(text('server "{name:q}" refuses every hello as "{reason:q}"'))
def refuses_every(stage: Stage, name: str, reason: str) -> None:
    stage.script(name, default=_reject(reason))


@given(text('server "{name:q}" refuses every hello as "{reason:q}" with retry_after_s {s:num}'))
def refuses_every_retry(stage: Stage, name: str, reason: str, s: float) -> None:
    stage.script(name, default=_reject(reason, s))


@given(text('server "{name:q}" refuses every hello as "{reason:q}", suggesting server "{other:q}"'))
def refuses_every_suggesting(stage: Stage, name: str, reason: str, other: str) -> None:
    stage.script(name, default=_reject(reason, None, stage.server(other).url))


@given(
    text(
        'server "{name:q}" refuses the next {n:n} hellos as "{reason:q}" with retry_after_s {s:num}'
    )
)
def refuses_next(stage: Stage, name: str, n: int, reason: str, s: float) -> None:
    stage.script(name, *[_reject(reason, s)] * n)


@step(text('server "{name:q}" welcomes every hello again'))
def welcomes_again(stage: Stage, name: str) -> None:
    stage.read(lambda: setattr(stage.server(name), "default", WELCOME))


@given(text('server "{name:q}" never answers hello'))
def never_answers(stage: Stage, name: str) -> None:
    stage.script(name, default=HelloAnswer("silent"))


@given(text('server "{name:q}" is unreachable'))
def unreachable(stage: Stage, name: str) -> None:
    stage.server(name).stop()  # its port stays in the policy: connections are refused


@given(text('server "{name:q}" accepts the upgrade without selecting a subprotocol'))
def no_subprotocol(stage: Stage, name: str) -> None:
    stage.server(name).on_connect = "no_subprotocol"


@when(text('server "{name:q}" answers every upgrade with bytes that are not HTTP'))
def answers_garbage(stage: Stage, name: str) -> None:
    stage.server(name).on_connect = "garbage"


@given(text('server "{name:q}" welcomes with keepalive_s {n:n}'))
def welcome_keepalive(stage: Stage, name: str, n: int) -> None:
    stage.server(name).keepalive_s = n


CERTIFICATES = {
    "a certificate for 127.0.0.1 from the CA the client trusts": "trusted",
    "a certificate for 127.0.0.1 from a CA the client does not trust": "unknown_ca",
    "a certificate for another host name from the CA the client trusts": "wrong_name",
}


@given(text('server "{name:q}" speaks TLS with {certificate}'))
def speaks_tls(stage: Stage, name: str, certificate: str) -> None:
    if certificate not in CERTIFICATES:
        raise SuiteDefect(f"no such certificate in the suite: {certificate!r}")
    stage.server(name, tls=CERTIFICATES[certificate])


# --- the AOI Client under test -----------------------------------------------------------


@given(text("the AOI Client is running"))
def client_running(stage: Stage) -> None:
    stage.start_client()


@when(text("the AOI Client is stopped"))
def client_stopped(stage: Stage) -> None:
    stage.stop_client()


@when(text("the AOI Client is started again with the same state directory"))
def client_restarted(stage: Stage) -> None:
    stage.notes["fetches before restart"] = len(stage.providers[0].endpoint.fetches)
    stage.start_client()


@when(text("the AOI Client fetches the policy again"))
def fetches_again(stage: Stage) -> None:
    endpoint = stage.providers[0].endpoint
    before = stage.notes.get("fetches before restart", 0)
    fetched = stage.wait(lambda: len(endpoint.served()) > before, stage.timeout(15))
    stage.world.precondition(
        bool(fetched),
        f"the AOI Client did not fetch its policy again within {stage.timeout(15):.0f} s "
        "of its restart",
    )


def _schema_invalid(document: dict[str, Any]) -> Any:
    return {**document, "keepalive_s": 1}  # the schema's minimum is 5


def _expired(document: dict[str, Any]) -> Any:
    return {**document, "valid_until": "2020-01-01T00:00:00Z"}


def _backoff_inverted(document: dict[str, Any]) -> Any:
    reallocation = dict(document["reallocation"])
    reallocation["backoff"] = {**reallocation["backoff"], "initial_ms": 2000, "max_ms": 100}
    return {**document, "reallocation": reallocation}


INVALID_DOCUMENTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "a document that fails the schema": _schema_invalid,
    "a document past its valid_until": _expired,
    "a document whose backoff max_ms is below initial_ms": _backoff_inverted,
}


@when(text('the provisioning endpoint serves {kind} listing server "{name:q}" instead'))
def serves_invalid(stage: Stage, kind: str, name: str) -> None:
    if kind not in INVALID_DOCUMENTS:
        raise SuiteDefect(f"no such invalid document in the suite: {kind!r}")
    stage.server(name)
    policy = stage.policy
    policy.servers = [(name, 0)]
    policy.policy_version += 1  # newer: only its faults can make the client refuse it
    policy.replacement = INVALID_DOCUMENTS[kind]
