"""Steps of AOI-3 delivery reports and cancellation: ``GET`` and ``DELETE`` of
``/v1/messages/{id}`` for the pushes a scenario made (:mod:`conformance.steps.pushes`).
"""

from __future__ import annotations

import secrets
import time

from pytest_bdd import step, then, when

from conformance import contract
from conformance.device import RESPONSE_S
from conformance.driver.http import Answer
from conformance.steps import text
from conformance.world import World

POLL_S = 0.1  # between two reads of a delivery report while waiting for its status


def report(world: World, label: str, server_app: str | None = None) -> Answer:
    push = world.pushes[label]
    world.precondition(push.id is not None, f"push {label!r} has no id")
    sender = (
        world.ixit.server_app(server_app)
        if server_app
        else world.ixit.server_app_of(push.app_alias or "one")
    )
    answer = world.http().request("GET", f"/v1/messages/{push.id}", key=sender.key, channel="aoi3")
    world.judge_answer(answer)
    return answer


def wait_report(world: World, label: str, status: str, timeout: float) -> Answer:
    """Read the report until it says ``status`` (or the time is up); the last answer."""
    deadline = time.monotonic() + world.timeout(timeout)
    while True:
        answer = report(world, label)
        if answer.json_object.get("status") == status or time.monotonic() >= deadline:
            return answer
        time.sleep(POLL_S)  # the report is polled: AOI-3 has no way to push it


def _judge_report(world: World, label: str, status: str, answer: Answer, req: str) -> None:
    world.check(
        req,
        answer.status == 200 and answer.json_object.get("status") == status,
        f"report of {label!r}: expected 200 status={status}, "
        f"got {answer.status} {answer.text[:300]}",
    )
    problems = contract.errors("aoi3/message_report.json", answer.body)
    world.check(req, not problems, f"the report is not a message_report: {'; '.join(problems)}")
    world.check(
        req,
        answer.json_object.get("id") == world.pushes[label].id,
        f"the report names id {answer.json_object.get('id')!r}, not {world.pushes[label].id!r}",
    )


@step(text('the delivery report of "{label:q}" says "{status:q}"'))
def report_precondition(world: World, label: str, status: str) -> None:
    answer = wait_report(world, label, status, RESPONSE_S)
    world.precondition(
        answer.json_object.get("status") == status,
        f"report of {label!r} is not {status}: {answer.status} {answer.text[:200]}",
    )


@then(text('the delivery report of "{label:q}" says "{status:q}" [{req:req}]'))
def report_says(world: World, label: str, status: str, req: str) -> None:
    _judge_report(world, label, status, wait_report(world, label, status, RESPONSE_S), req)


@then(text('the delivery report of "{label:q}" says "delivered" with delivered_at [{req:req}]'))
def report_delivered_at(world: World, label: str, req: str) -> None:
    answer = wait_report(world, label, "delivered", RESPONSE_S)
    _judge_report(world, label, "delivered", answer, req)
    world.check(
        req,
        isinstance(answer.json_object.get("delivered_at"), str),
        f"a delivered report must carry delivered_at: {answer.text[:300]}",
    )


@then(
    text('the delivery report of "{label:q}" says "{status:q}" once its TTL has passed [{req:req}]')
)
def report_after_ttl(world: World, label: str, status: str, req: str) -> None:
    ttl = int(world.pushes[label].answer.json_object.get("ttl_s", 0) or 0)
    answer = wait_report(world, label, status, ttl + RESPONSE_S)
    _judge_report(world, label, status, answer, req)


@when(text('the server app "{sender:q}" asks for the delivery report of "{label:q}"'))
def asks_report_as(world: World, sender: str, label: str) -> None:
    world.notes["report"] = report(world, label, server_app=sender)


@when(text("the server app asks for the delivery report of an unknown id"))
def asks_unknown_report(world: World) -> None:
    key = world.ixit.server_app_of("one").key
    answer = world.http().request(
        "GET", f"/v1/messages/n{secrets.token_hex(12)}", key=key, channel="aoi3"
    )
    world.judge_answer(answer)
    world.notes["report"] = answer


@then(text('the report is refused with 404 "not_found" [{req:req}]'))
def report_refused(world: World, req: str) -> None:
    answer: Answer = world.notes["report"]
    world.check(
        req,
        answer.status == 404 and answer.json_object.get("error") == "not_found",
        f"expected 404 {{error: not_found}}, got {answer.status} {answer.text[:300]}",
    )


@when(text('the server app cancels "{label:q}"'))
def cancels(world: World, label: str) -> None:
    world.notes["cancel"] = _cancel(world, label)


def _cancel(world: World, label: str) -> Answer:
    push = world.pushes[label]
    key = world.ixit.server_app_of(push.app_alias or "one").key
    answer = world.http().request("DELETE", f"/v1/messages/{push.id}", key=key, channel="aoi3")
    world.judge_answer(answer)
    return answer


@then(text('the cancel is answered 200 with status "cancelled" [{req:req}]'))
def cancel_answered(world: World, req: str) -> None:
    answer: Answer = world.notes["cancel"]
    world.check(
        req,
        answer.status == 200 and answer.json_object.get("status") == "cancelled",
        f"DELETE of a queued notification: expected 200 status=cancelled, got {answer.status} "
        f"{answer.text[:300]}",
    )


@then(text('cancelling "{label:q}" again gives the same report [{req:req}]'))
def cancel_again(world: World, label: str, req: str) -> None:
    first: Answer = world.notes["cancel"]
    again = _cancel(world, label)
    world.check(
        req,
        again.status == 200 and again.json_object.get("status") == "cancelled",
        f"a repeated DELETE must return the same report: got {again.status} {again.text[:300]}",
    )
    world.check(
        req,
        again.json_object.get("id") == first.json_object.get("id"),
        "a repeated DELETE returned the report of another notification",
    )


@then(text('the cancel is refused with 409 "not_cancellable" [{req:req}]'))
def cancel_refused(world: World, req: str) -> None:
    answer: Answer = world.notes["cancel"]
    world.check(
        req,
        answer.status == 409 and answer.json_object.get("error") == "not_cancellable",
        f"DELETE of a delivered notification: expected 409 not_cancellable, got {answer.status} "
        f"{answer.text[:300]}",
    )
