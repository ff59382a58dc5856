"""The verdict engine: checks name requirements; levels and the ICS decide verdicts."""

from __future__ import annotations

import pytest
from conformance.registry import load_registry
from conformance.verdicts import (
    ConformanceFailure,
    Outcome,
    PreconditionFailed,
    ScenarioVerdicts,
    SuiteDefect,
    Verdict,
    combine,
    scenario_verdict,
)

REGISTRY = load_registry()


def verdicts(*tags: str) -> ScenarioVerdicts:
    return ScenarioVerdicts(REGISTRY, frozenset(tags))


def test_checks_that_hold_pass() -> None:
    v = verdicts("AOI-OLC-002")
    assert v.check("AOI-OLC-002", True, "refused as overloaded")
    assert v.outcomes()["AOI-OLC-002"].verdict is Verdict.PASS


def test_a_shall_violation_fails_and_stops_the_scenario() -> None:
    v = verdicts("AOI-OLC-002")
    with pytest.raises(ConformanceFailure) as caught:
        v.check("AOI-OLC-002", False, "refused as invalid_credentials")
    assert isinstance(caught.value, AssertionError)  # Allure: failed, not broken
    assert "[AOI-OLC-002]" in str(caught.value)
    outcome = v.outcomes(caught.value)["AOI-OLC-002"]
    assert outcome.verdict is Verdict.FAIL
    assert "invalid_credentials" in outcome.explanation


def test_a_should_violation_warns_and_goes_on() -> None:
    v = verdicts("AOI-OLC-003", "AOI-OLC-002")
    v.check("AOI-OLC-002", True, "ok")
    assert v.check("AOI-OLC-003", False, "no retry_after_s") is False
    outcomes = v.outcomes()
    assert outcomes["AOI-OLC-003"].verdict is Verdict.WARN
    assert outcomes["AOI-OLC-002"].verdict is Verdict.PASS
    assert scenario_verdict(outcomes) is Verdict.WARN


def test_a_declared_optional_feature_binds_like_shall() -> None:
    v = verdicts("AOI-DEL-008")
    with pytest.raises(ConformanceFailure):
        v.check("AOI-DEL-008", False, "the older one was delivered")


@pytest.mark.parametrize(
    ("tags", "req"),
    [(("AOI-OLC-002",), "AOI-XYZ-001"), (("AOI-OLC-002",), "AOI-DEL-001")],
    ids=["unknown", "untagged"],
)
def test_a_check_of_an_unknown_or_untagged_requirement_is_a_suite_defect(
    tags: tuple[str, ...], req: str
) -> None:
    with pytest.raises(SuiteDefect):
        verdicts(*tags).check(req, True, "")


def test_ambient_requirements_may_be_checked_anywhere() -> None:
    v = verdicts("AOI-DEL-001")
    v.check("AOI-DEL-001", True, "ok")
    with pytest.raises(ConformanceFailure):
        v.check("AOI-GEN-002", False, "a notify without id")
    assert v.outcomes()["AOI-GEN-002"].verdict is Verdict.FAIL


def test_a_recorded_violation_lets_the_scenario_go_on_and_fails_it_at_the_end() -> None:
    v = verdicts("AOI-APP-002")
    v.record("AOI-GEN-002", False, "a registered frame with a short token")
    assert v.check("AOI-APP-002", True, "tokens differ")  # the scenario went on
    with pytest.raises(ConformanceFailure) as caught:
        v.raise_recorded()
    assert caught.value.req == "AOI-GEN-002"
    outcomes = v.outcomes(caught.value)
    assert outcomes["AOI-GEN-002"].verdict is Verdict.FAIL
    assert outcomes["AOI-APP-002"] == Outcome(Verdict.PASS, "1 check(s) held")  # all steps ran


def test_recorded_checks_that_held_raise_nothing() -> None:
    v = verdicts("AOI-DEL-001")
    v.record("AOI-GEN-002", True, "valid")
    v.raise_recorded()


def test_a_requirement_checked_in_part_before_the_scenario_stopped_is_blocked() -> None:
    v = verdicts("AOI-DEL-002", "AOI-APP-002")
    v.check("AOI-APP-002", True, "tokens differ")
    v.check("AOI-DEL-002", True, "A got its own marker")
    with pytest.raises(PreconditionFailed) as caught:
        v.precondition(False, "B's marker reached A")
    v.unreached = frozenset({"AOI-DEL-002"})  # cited by the failing step and later ones
    outcomes = v.outcomes(caught.value)
    assert outcomes["AOI-DEL-002"].verdict is Verdict.BLOCKED
    assert "1 check(s) held" in outcomes["AOI-DEL-002"].explanation
    assert outcomes["AOI-APP-002"].verdict is Verdict.PASS  # all of its steps ran


def test_a_tagged_requirement_never_checked_is_an_error_of_the_suite() -> None:
    v = verdicts("AOI-OLC-001", "AOI-CON-004")
    v.check("AOI-OLC-001", True, "ok")
    assert v.unchecked() == ["AOI-CON-004"]
    assert v.outcomes()["AOI-CON-004"].verdict is Verdict.ERROR


def test_requirements_after_a_failure_are_blocked_not_judged() -> None:
    v = verdicts("AOI-OLC-001", "AOI-CON-004")
    with pytest.raises(ConformanceFailure) as caught:
        v.check("AOI-OLC-001", False, "no welcome")
    outcomes = v.outcomes(caught.value)
    assert outcomes["AOI-OLC-001"].verdict is Verdict.FAIL
    assert outcomes["AOI-CON-004"].verdict is Verdict.BLOCKED


def test_a_failed_precondition_blocks_everything_unchecked() -> None:
    v = verdicts("AOI-DEL-006")
    with pytest.raises(PreconditionFailed) as caught:
        v.precondition(False, "register was not answered")
    assert v.outcomes(caught.value)["AOI-DEL-006"].verdict is Verdict.BLOCKED


def test_an_exception_of_the_suite_is_an_error() -> None:
    v = verdicts("AOI-DEL-001")
    outcome = v.outcomes(KeyError("oops"))["AOI-DEL-001"]
    assert outcome.verdict is Verdict.ERROR


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([Verdict.PASS, Verdict.PASS], Verdict.PASS),
        ([Verdict.PASS, Verdict.WARN], Verdict.WARN),
        ([Verdict.WARN, Verdict.FAIL], Verdict.FAIL),
        ([Verdict.PASS, Verdict.BLOCKED], Verdict.ERROR),
        ([Verdict.ERROR, Verdict.FAIL], Verdict.FAIL),
        ([Verdict.NA], Verdict.NA),
        ([], Verdict.NA),
    ],
)
def test_scenarios_combine_into_the_requirement_verdict(
    outcomes: list[Verdict], expected: Verdict
) -> None:
    assert combine(outcomes) is expected
