"""Steps of security: failed hello limits, the provisioning endpoint, TLS."""

from __future__ import annotations

import secrets

from pytest_bdd import then, when

from conformance import contract
from conformance.device import RESPONSE_S, Device, describe
from conformance.driver.http import Answer
from conformance.ixit import Client
from conformance.steps import text
from conformance.world import World


def _failed_hello(world: World, device: Device) -> str:
    """Say hello as ``device`` with a wrong credential: the reason of the reject, or what
    came instead."""
    device.open()
    device.hello(credential="wrong-" + secrets.token_urlsafe(12))
    frame = device.answer_to_hello()
    answer = (
        str(frame.get("reason"))
        if frame is not None and frame.type == "reject"
        else describe(frame, device.connection().closed)
    )
    device.connection().wait_closed(world.timeout(RESPONSE_S))
    device.connection().close(timeout=world.timeout(1))
    return answer


@when(
    text(
        'client "{name:q}" says hello with a wrong credential as often as the per-client '
        "failed hello limit"
    )
)
def hellos_wrong(world: World, name: str) -> None:
    device = world.device(name)
    world.notes["failed hellos"] = [
        _failed_hello(world, device) for _ in range(world.ixit.failed_hello_limit)
    ]


@when(text("unknown clients say hello from the same address up to the per-source limit"))
def strangers_wrong(world: World) -> None:
    """Unknown clients, each under a client id of its own (so that no per-client limit is
    reached), fail hellos from the suite's address until the failures from it, those of
    the steps before included, reach the IXIT's per-source limit; or until one is
    already refused ``rate_limited`` (a limit stricter than declared is no fault)."""
    failures = sum(1 for a in world.notes["failed hellos"] if a == "invalid_credentials")
    answers: list[str] = []
    while failures < world.ixit.source_limit and "rate_limited" not in answers:
        name = f"unknown client {len(answers) + 1}"
        identity = Client(name, f"unknown-{secrets.token_hex(4)}", secrets.token_urlsafe(12))
        device = world.devices[name] = Device(world, name, identity)
        answers.append(_failed_hello(world, device))
        failures += answers[-1] == "invalid_credentials"
    world.notes["failed hellos"] = answers


@then(text('every attempt is rejected with "{first:q}" or "{second:q}" [{req:req}]'))
def attempts_rejected(world: World, first: str, second: str, req: str) -> None:
    answers: list[str] = world.notes["failed hellos"]
    world.check(
        req,
        all(a in (first, second) for a in answers),
        f"failed hellos were answered {answers}; expected reject {first} (or {second})",
    )


# --- provisioning --------------------------------------------------------------------


@then(text("the policy document is served with 200 and is valid [{req:req}]"))
def policy_served(world: World, req: str) -> None:
    answer: Answer = world.notes["policy"]
    world.check(
        req,
        answer.status == 200,
        f"GET /v1/provisioning with valid client credentials: {answer.status} {answer.text[:200]}",
    )
    problems = contract.errors("policy.json", answer.body)
    world.check(req, not problems, f"the policy document is invalid: {'; '.join(problems[:5])}")


@when(text("the policy is requested without credentials"))
def policy_anonymous(world: World) -> None:
    world.notes["policy"] = world.http().request("GET", "/v1/provisioning", channel="aoi-p")


@when(text('the policy is requested with a wrong credential for client "{name:q}"'))
def policy_wrong(world: World, name: str) -> None:
    identity = world.device(name).identity
    world.notes["policy"] = world.http().request(
        "GET",
        "/v1/provisioning",
        basic=(identity.client_id, "wrong-" + secrets.token_urlsafe(12)),
        channel="aoi-p",
    )


@then(text('the policy request is refused with 401 "unauthorized" [{req:req}]'))
def policy_refused(world: World, req: str) -> None:
    answer: Answer = world.notes["policy"]
    world.check(
        req,
        answer.status == 401 and answer.json_object.get("error") == "unauthorized",
        f"expected 401 {{error: unauthorized}}, got {answer.status} {answer.text[:200]}",
    )
    world.check(
        req,
        "provider" not in answer.json_object,
        "the 401 answer carries the policy document",
    )


# --- TLS -----------------------------------------------------------------------------


@when(text('client "{name:q}" connects over TLS and says hello'))
def tls_hello(world: World, name: str) -> None:
    device = world.device(name)
    if device.connect().accepted:  # a failed TLS handshake is judged, not a precondition
        device.hello()


@then(
    text(
        'the connection of client "{name:q}" runs over TLS with a verified certificate [{req:req}]'
    )
)
def runs_over_tls(world: World, name: str, req: str) -> None:
    device = world.device(name)
    url = world.endpoint().aoi2
    world.check(req, url.startswith("wss://"), f"the AOI-2 URL {url} is not wss://")
    handshake = device.connection().handshake
    world.check(
        req,
        handshake.accepted,
        "no TLS connection with certificate and host name verification "
        f"(CA {world.endpoint().ca_file or 'system store'}): {handshake.error or handshake.status}",
    )
