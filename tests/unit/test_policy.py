"""Policy documents: the schema, then the rules a schema cannot state."""

from __future__ import annotations

import copy
from typing import Any

import aoi_schemas
import pytest

from aoi.core.policy import Action, PolicyError, load_policy

VALID, INVALID = aoi_schemas.examples(aoi_schemas.ROOT / "policy.json")


def document(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID[0])
    doc.update(changes)
    return doc


def test_the_design_example_parses() -> None:
    policy = load_policy(document())
    assert policy.provider == "op.example" and policy.policy_version == 7
    assert [s.id for s in policy.servers] == ["a", "b", "c"]
    assert policy.servers[2].weight == 1  # default
    assert policy.reallocation.on_overload is Action.NEXT_SERVER
    assert policy.reallocation.backoff.cap_s(0) == 0.5
    assert [s.id for s in policy.candidates("com.example.chat")] == ["c"]
    assert [s.id for s in policy.candidates("com.example.other")] == ["a", "b", "c"]
    assert policy.valid_until == 1796083200.0
    assert policy.expired(1796083200.0) and not policy.expired(1796083199.0)


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["why"])
def test_schema_violations_are_refused_with_their_place(case: dict[str, Any]) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(case["instance"])
    assert caught.value.problems


def test_every_semantic_problem_is_reported_at_once() -> None:
    doc = document()
    doc["servers"].append(copy.deepcopy(doc["servers"][0]))
    doc["app_routes"] = [{"app_id": "x", "servers": ["zz"]}]
    doc["reallocation"]["backoff"]["max_ms"] = 10
    with pytest.raises(PolicyError) as caught:
        load_policy(doc)
    assert caught.value.problems == (
        "servers: duplicate id 'a'",
        "app_routes/0: unknown servers ['zz']",
        "reallocation/backoff: max_ms is below initial_ms",
    )


def test_unknown_members_are_ignored() -> None:
    assert load_policy(document(future_field={"x": 1})).policy_version == 7


def test_the_optional_members_are_those_of_the_schema_and_the_limits_too() -> None:
    for member in ("valid_until", "app_routes"):
        doc = document()
        del doc[member]
        assert load_policy(doc).policy_version == 7
    for member in ("fallback", "multi_server"):
        doc = document()
        del doc[member]
        with pytest.raises(PolicyError):
            load_policy(doc)
    doc = document()
    doc["reallocation"]["backoff"]["initial_ms"] = 0
    with pytest.raises(PolicyError):
        load_policy(doc)
    doc["reallocation"]["backoff"].update(initial_ms=100, jitter="none")
    backoff = load_policy(doc).reallocation.backoff
    assert [backoff.delay_s(n, 0.3) for n in range(3)] == [backoff.cap_s(n) for n in range(3)]
