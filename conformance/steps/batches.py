"""Steps of the batch push (optional feature ``batch``): ``POST /v1/push``.

A batch's items are kept in the order they were sent, beside the results; an accepted item
also becomes a :class:`Push` under its label, with its result as the answer, so that the
steps of single pushes (delivery "as pushed", reports) judge it the same way.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
from pytest_bdd import then, when

from conformance import contract
from conformance.driver.http import Answer
from conformance.steps import text
from conformance.world import Push, World

BATCH_PATH = "/v1/push"  # docs/protocol.md 3.3.1
MAX_BATCH = 500
LABELS = re.compile(r'"([^"]*)"')
UNSENT = "not a batch"  # the label of what a request refused as a whole carries


@dataclass(frozen=True, slots=True)
class Sent:
    """A batch as sent: the items, the app and device they were for, the answer."""

    items: list[Any]
    app: str
    device: str
    answer: Answer
    expected: dict[int, tuple[int, str]]  # item index -> the single push's (status, error)


def send_batch(
    world: World,
    app: str,
    name: str,
    body: Any,
    expected: dict[int, tuple[int, str]] | None = None,
) -> Sent:
    device = world.device(name)
    world.precondition(app in device.tokens, f"client {name} has no token for app {app!r}")
    sender = world.ixit.server_app_of(app)
    answer = world.http().request("POST", BATCH_PATH, key=sender.key, body=body, channel="aoi3")
    world.judge_answer(answer)
    items = body.get("notifications") if isinstance(body, dict) else None
    sent = Sent(items if isinstance(items, list) else [], app, name, answer, expected or {})
    world.notes["batch"] = sent
    return sent


def item(world: World, app: str, name: str, label: str, **extra: Any) -> dict[str, Any]:
    token = world.device(name).tokens[app]
    return {"token": token, "payload": label, "ttl_s": 600, **extra}


@when(text('the server app pushes the batch {labels} to app "{app:q}" of client "{name:q}"'))
def pushes_batch(world: World, labels: str, app: str, name: str) -> None:
    names = LABELS.findall(labels)
    world.precondition(bool(names), f"no quoted labels in {labels!r}")
    items = [item(world, app, name, label) for label in names]
    send_batch(world, app, name, {"notifications": items})


@when(
    text(
        'the server app pushes a batch with bad notifications between "{first:q}" and '
        '"{last:q}" to app "{app:q}" of client "{name:q}"'
    )
)
def pushes_bad_batch(world: World, first: str, last: str, app: str, name: str) -> None:
    good = item(world, app, name, "unused")
    items = [
        item(world, app, name, first),
        {**good, "token": secrets.token_urlsafe(24), "payload": "to nobody"},
        {**good, "payload": "typo", "tll_s": 60},
        {**good, "payload": "x" * 4097},
        {"payload": "no token", "ttl_s": 600},
        item(world, app, name, last),
    ]
    expected = {
        1: (404, "unknown_token"),
        2: (400, "invalid_request"),
        3: (413, "payload_too_large"),
        4: (400, "invalid_request"),
    }
    send_batch(world, app, name, {"notifications": items}, expected)


@when(text('the server app pushes an empty batch to app "{app:q}" of client "{name:q}"'))
def pushes_empty_batch(world: World, app: str, name: str) -> None:
    send_batch(world, app, name, {"notifications": []})


@when(
    text(
        "the server app pushes a batch of {count:n} notifications "
        'to app "{app:q}" of client "{name:q}"'
    )
)
def pushes_big_batch(world: World, count: int, app: str, name: str) -> None:
    world.precondition(count > MAX_BATCH, "the scenario is for a batch over the maximum")
    send_batch(world, app, name, {"notifications": [item(world, app, name, UNSENT)] * count})


@when(
    text(
        "the server app pushes a single push's body as a batch "
        'to app "{app:q}" of client "{name:q}"'
    )
)
def pushes_single_body(world: World, app: str, name: str) -> None:
    send_batch(world, app, name, {"payload": UNSENT, "ttl_s": 600})


@when(
    text(
        'the server app pushes a batch with an unknown member "{member:q}" '
        'to app "{app:q}" of client "{name:q}"'
    )
)
def pushes_batch_unknown_member(world: World, member: str, app: str, name: str) -> None:
    send_batch(world, app, name, {"notifications": [item(world, app, name, UNSENT)], member: 1})


# --- judgements ----------------------------------------------------------------------


def _sent(world: World) -> Sent:
    sent: Sent | None = world.notes.get("batch")
    if sent is None:
        raise RuntimeError("suite: no batch was pushed in this scenario")
    return sent


def _results(world: World, sent: Sent) -> list[dict[str, Any]]:
    results = sent.answer.json_object.get("results")
    return [r if isinstance(r, dict) else {} for r in results] if isinstance(results, list) else []


@then(text("the batch is answered 200 with one result per notification [{req:req}]"))
def answered(world: World, req: str) -> None:
    sent = _sent(world)
    answer = sent.answer
    world.check(req, answer.status == 200, f"batch answered {answer.status} {answer.text[:300]}")
    problems = contract.errors("aoi3/push_batch_response.json", answer.body)
    world.check(req, not problems, f"not a push_batch_response: {'; '.join(problems)}")
    results = _results(world, sent)
    world.check(
        req,
        len(results) == len(sent.items),
        f"{len(sent.items)} notifications sent, {len(results)} results",
    )
    for body, result in zip(sent.items, results, strict=False):
        if result.get("status") == 201 and isinstance(body, dict):
            label = body.get("payload", "")
            one = Answer(201, httpx.Headers(), result, str(result))
            world.pushes[label] = Push(label, one, sent.app, sent.device, body)


@then(text("every notification of the batch is accepted with an id of its own [{req:req}]"))
def all_accepted(world: World, req: str) -> None:
    sent = _sent(world)
    results = _results(world, sent)
    refused = [(i, r) for i, r in enumerate(results) if r.get("status") != 201]
    world.check(req, not refused, f"results not 201: {refused[:5]}")
    ids = [r.get("id") for r in results]
    world.check(
        req,
        all(isinstance(i, str) for i in ids) and len(set(ids)) == len(ids),
        f"the ids of the batch are not one distinct id per notification: {ids}",
    )


@then(text("each bad notification of the batch gets the error of its single push [{req:req}]"))
def bad_refused_alone(world: World, req: str) -> None:
    sent = _sent(world)
    results = _results(world, sent)
    world.precondition(len(results) == len(sent.items), "the batch has no result per item")
    for index, (status, error) in sent.expected.items():
        got = results[index]
        world.check(
            req,
            got.get("status") == status and got.get("error") == error,
            f"notification {index} of the batch ({_show(sent.items[index])}): expected "
            f"{status} {error}, as its single push gets, got {got}",
        )
    good = [i for i in range(len(results)) if i not in sent.expected]
    for index in good:
        world.check(
            req,
            results[index].get("status") == 201,
            f"notification {index} of the batch is valid, but got {results[index]}: "
            "a bad notification beside it must not fail it",
        )


@then(text('client "{name:q}" receives "{label:q}" once with each id of the batch [{req:req}]'))
def receives_each_id(world: World, name: str, label: str, req: str) -> None:
    sent = _sent(world)
    device = world.device(name)
    wanted = sorted(str(r.get("id")) for r in _results(world, sent))
    got = []
    for _ in wanted:
        frame = device.notification(label)
        if frame is None:
            break
        got.append(str(frame.get("id")))
        device.ack(frame.get("id"))
    world.check(
        req,
        sorted(got) == wanted,
        f"client {name} received {label!r} with ids {sorted(got)}; the batch's results "
        f"gave {wanted}",
    )


@then(text('the batch is refused with {status:n} "{code:q}" [{req:req}]'))
def refused_whole(world: World, status: int, code: str, req: str) -> None:
    answer = _sent(world).answer
    world.check(
        req,
        answer.status == status and answer.json_object.get("error") == code,
        f"expected {status} {{error: {code}}} for the whole request, got {answer.status} "
        f"{answer.text[:300]}",
    )


def _show(body: Any) -> str:
    text = str(body)
    return text if len(text) <= 120 else text[:120] + "..."
