"""Steps of AOI-3: pushes and health.

Delivery reports and cancellation are :mod:`conformance.steps.delivery_reports`.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from pytest_bdd import step, then, when

from conformance import contract
from conformance.driver.http import Answer
from conformance.steps import text
from conformance.world import Push, World

OPTION = re.compile(
    r'priority "(?P<priority>[^"]+)"|ttl (?P<ttl>\d+)|collapse key "(?P<key>[^"]+)"'
)


def push_to(
    world: World,
    label: str,
    app: str,
    name: str,
    *,
    server_app: str | None = None,
    options: str = "",
    body: dict[str, Any] | None = None,
) -> Push:
    """Push ``label`` to a registered app of a device, as the server app of that app (or
    ``server_app``), to the endpoint the target gave (server apps use it as given)."""
    device = world.device(name)
    world.precondition(app in device.tokens, f"client {name} has no token for app {app!r}")
    token = device.tokens[app]
    sender = world.ixit.server_app(server_app) if server_app else world.ixit.server_app_of(app)
    if body is None:
        body = {"payload": label, "ttl_s": 600}
        for match in OPTION.finditer(options):
            if match["priority"]:
                body["priority"] = match["priority"]
            if match["ttl"]:
                body["ttl_s"] = int(match["ttl"])
            if match["key"]:
                body["collapse_key"] = match["key"]
    endpoint = device.endpoints.get(app) or f"/v1/push/{token}"
    answer = world.http().request("POST", endpoint, key=sender.key, body=body, channel="aoi3")
    world.judge_answer(answer)
    push = Push(label, answer, app, name, body)
    world.pushes[label] = push
    world.last_push = push
    return push


@when(text('the server app pushes "{label:q}" to app "{app:q}" of client "{name:q}"'))
def pushes(world: World, label: str, app: str, name: str) -> None:
    push_to(world, label, app, name)


@when(
    text('the server app pushes "{label:q}" with {options} to app "{app:q}" of client "{name:q}"')
)
def pushes_with(world: World, label: str, options: str, app: str, name: str) -> None:
    push_to(world, label, app, name, options=options)


@when(text('the server app "{sender:q}" pushes "{label:q}" to app "{app:q}" of client "{name:q}"'))
def pushes_as(world: World, sender: str, label: str, app: str, name: str) -> None:
    push_to(world, label, app, name, server_app=sender)


@step(text('the server app has pushed "{label:q}" to app "{app:q}" of client "{name:q}"'))
def has_pushed(world: World, label: str, app: str, name: str) -> None:
    _accepted(world, push_to(world, label, app, name))


@step(
    text(
        'the server app has pushed "{label:q}" with {options} to app "{app:q}" of client "{name:q}"'
    )
)
def has_pushed_with(world: World, label: str, options: str, app: str, name: str) -> None:
    _accepted(world, push_to(world, label, app, name, options=options))


def _accepted(world: World, push: Push) -> None:
    world.precondition(
        push.answer.status == 201 and push.id is not None,
        f"push {push.label!r} was not accepted: HTTP {push.answer.status} {push.answer.text[:200]}",
    )


@when(text('the server app pushes "{label:q}" to an unknown token'))
def pushes_unknown(world: World, label: str) -> None:
    key = world.ixit.server_app_of("one").key
    token = secrets.token_urlsafe(24)
    answer = world.http().request(
        "POST", f"/v1/push/{token}", key=key, body={"payload": label, "ttl_s": 60}, channel="aoi3"
    )
    world.judge_answer(answer)
    world.last_push = Push(label, answer, None, None)


@when(
    text(
        'the server app pushes "{label:q}" to the unregistered token '
        'of app "{app:q}" of client "{name:q}"'
    )
)
def pushes_unregistered(world: World, label: str, app: str, name: str) -> None:
    token, endpoint = world.notes[f"unregistered {name} {app}"]
    key = world.ixit.server_app_of(app).key
    answer = world.http().request(
        "POST",
        endpoint or f"/v1/push/{token}",
        key=key,
        body={"payload": label, "ttl_s": 60},
        channel="aoi3",
    )
    world.judge_answer(answer)
    world.last_push = Push(label, answer, None, None)


@when(
    text(
        'the server app pushes a body with the unknown member "{member:q}" '
        'to app "{app:q}" of client "{name:q}"'
    )
)
def pushes_unknown_member(world: World, member: str, app: str, name: str) -> None:
    push_to(world, "typo", app, name, body={"payload": "typo", "ttl_s": 60, member: 60})


@when(
    text(
        'the server app pushes a payload of {count:n} times "{char:q}" '
        'to app "{app:q}" of client "{name:q}"'
    )
)
def pushes_payload(world: World, count: int, char: str, app: str, name: str) -> None:
    payload = char * count
    world.notes["payload"] = payload
    push_to(world, payload, app, name, body={"payload": payload, "ttl_s": 600})


@when(text('a push to app "{app:q}" of client "{name:q}" is sent without a key'))
def push_without_key(world: World, app: str, name: str) -> None:
    _push_key(world, app, name, None)


@when(text('a push to app "{app:q}" of client "{name:q}" is sent with a wrong key'))
def push_wrong_key(world: World, app: str, name: str) -> None:
    _push_key(world, app, name, "sk_wrong_" + secrets.token_urlsafe(16))


def _push_key(world: World, app: str, name: str, key: str | None) -> None:
    device = world.device(name)
    token = device.tokens[app]
    label = "unauthorised push"
    answer = world.http().request(
        "POST",
        device.endpoints.get(app) or f"/v1/push/{token}",
        key=key,
        body={"payload": label, "ttl_s": 60},
        channel="aoi3",
    )
    world.judge_answer(answer)
    world.last_push = Push(label, answer, app, name)


@when(text('the server app "{sender:q}" pushes back to back to app "{app:q}" of client "{name:q}"'))
def pushes_back_to_back(world: World, sender: str, app: str, name: str) -> None:
    answers = []
    for n in range(world.ixit.rate_limit_pushes):
        push = push_to(world, f"burst {n}", app, name, server_app=sender)
        answers.append(push.answer)
        if push.answer.status == 429:
            break
    world.notes["burst"] = answers


# --- judgements ----------------------------------------------------------------------


def _last(world: World) -> Answer:
    if world.last_push is None:
        raise RuntimeError("suite: no push was made in this scenario")
    return world.last_push.answer


@then(text("the push is accepted with 201, an id and a Location [{req:req}]"))
def accepted_with_id(world: World, req: str) -> None:
    answer = _last(world)
    world.check(req, answer.status == 201, f"push answered {answer.status} {answer.text[:300]}")
    problems = contract.errors("aoi3/push_response.json", answer.body)
    world.check(req, not problems, f"201 body is not a push_response: {'; '.join(problems)}")
    nid = answer.json_object.get("id")
    location = answer.headers.get("location", "")
    world.check(
        req,
        location.endswith(f"/v1/messages/{nid}"),
        f"Location is {location!r}, expected /v1/messages/{nid}",
    )


@step(text("the push is accepted with 201"))
def accepted_precondition(world: World) -> None:
    assert world.last_push is not None
    _accepted(world, world.last_push)


@then(text("the push is accepted with 201 [{req:req}]"))
def accepted(world: World, req: str) -> None:
    answer = _last(world)
    world.check(req, answer.status == 201, f"push answered {answer.status} {answer.text[:300]}")


@then(text('the push is refused with {status:n} "{code:q}" [{req:req}]'))
def refused(world: World, status: int, code: str, req: str) -> None:
    answer = _last(world)
    world.check(
        req,
        answer.status == status and answer.json_object.get("error") == code,
        f"expected {status} {{error: {code}}}, got {answer.status} {answer.text[:300]}",
    )


@then(text('the push is refused with 401 "unauthorized" and a Bearer challenge [{req:req}]'))
def refused_unauthorized(world: World, req: str) -> None:
    refused(world, 401, "unauthorized", req)
    challenge = _last(world).headers.get("www-authenticate", "")
    world.check(
        req,
        challenge.lower().startswith("bearer"),
        f"a 401 must carry WWW-Authenticate: Bearer, got {challenge!r}",
    )


@then(text('a push is refused with 429 "rate_limited" and a Retry-After in seconds [{req:req}]'))
def refused_rate_limited(world: World, req: str) -> None:
    answers: list[Answer] = world.notes["burst"]
    limited = [a for a in answers if a.status == 429]
    others = sorted({a.status for a in answers if a.status not in (201, 429)})
    world.precondition(not others, f"pushes of the burst were answered {others}")
    world.check(
        req,
        bool(limited),
        f"{len(answers)} pushes back to back (the IXIT's [rate_limit] pushes) got no 429",
    )
    answer = limited[0]
    world.check(
        req,
        answer.json_object.get("error") == "rate_limited",
        f"429 body is not {{error: rate_limited}}: {answer.text[:300]}",
    )
    retry = answer.headers.get("retry-after", "")
    world.check(
        req,
        retry.isdigit(),
        f"a 429 must carry Retry-After in whole seconds, got {retry!r}",
    )


@then(text("the push is answered 503 with Retry-After [{req:req}]"))
def answered_503(world: World, req: str) -> None:
    answer = _last(world)
    retry = answer.headers.get("retry-after", "")
    world.check(
        req,
        answer.status == 503 and answer.json_object.get("error") == "overloaded",
        f"a push while overloaded got {answer.status} {answer.text[:200]}; expected 503 overloaded",
    )
    world.check(req, retry.isdigit(), f"503 must carry Retry-After in seconds, got {retry!r}")


# --- health --------------------------------------------------------------------------


@then(text("the health endpoint answers with a valid health document [{req:req}]"))
def health_valid(world: World, req: str) -> None:
    answer = world.http().request("GET", "/v1/health", channel="health")
    problems = contract.errors("aoi3/health.json", answer.body)
    world.check(
        req,
        answer.status in (200, 503) and not problems,
        f"GET /v1/health: {answer.status} {'; '.join(problems)} {answer.text[:200]}",
    )
