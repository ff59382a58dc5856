"""The registry is closed: features cite only known requirements, and every SHALL of a
role the suite certifies has a scenario that checks it: in server mode for role S, in
client mode (features/client_*.feature) for role C."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conformance.registry import (
    FEATURES_DIR,
    OTHER_TAGS,
    REGISTRY_FILE,
    REQUIREMENT_TAG,
    Level,
    ScenarioSpec,
    closure_problems,
    group_of,
    load_registry,
    load_scenarios,
    scenarios_by_requirement,
)

ROLES_UNDER_TEST = {"S", "C"}
SPECS = load_scenarios()
REGISTRY = load_registry()


def _id(spec: ScenarioSpec) -> str:
    return f"{spec.feature_file}: {spec.name} {spec.example or ''}".strip()


def test_features_exist() -> None:
    assert len(SPECS) > 40
    assert all(spec.requirements for spec in SPECS), [_id(s) for s in SPECS if not s.requirements]


@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_scenario_cites_known_requirements_only(spec: ScenarioSpec) -> None:
    unknown = (spec.requirements | spec.cited) - set(REGISTRY.requirements)
    assert not unknown, f"unknown requirement ids {sorted(unknown)}"
    stray = {t for t in spec.tags if not REQUIREMENT_TAG.match(t)} - OTHER_TAGS.keys()
    assert not stray, f"tags that are neither requirements nor {sorted(OTHER_TAGS)}: {stray}"


@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_scenario_checks_what_it_tags(spec: ScenarioSpec) -> None:
    """A tagged requirement no step names would be asserted by nobody (and vice versa)."""
    assert spec.requirements <= spec.cited, (
        f"tagged but named by no step: {sorted(spec.requirements - spec.cited)}"
    )
    assert spec.cited <= spec.requirements, (
        f"named by a step but not tagged: {sorted(spec.cited - spec.requirements)}"
    )


@pytest.mark.parametrize(
    ("req", "side"),
    [
        (r, side)
        for r, q in REGISTRY.requirements.items()
        for side in sorted(ROLES_UNDER_TEST & set(q.roles))
        if q.level is Level.SHALL and q.feature is None
    ],
)
def test_every_shall_has_a_scenario_of_its_role(req: str, side: str) -> None:
    """A requirement of the server needs a server-mode scenario, one of the client a
    client-mode scenario; one of both roles needs both."""
    covered = scenarios_by_requirement([s for s in SPECS if s.side == side])
    assert req in covered, f"{req} (SHALL, role {side}) has no scenario of role {side}"


def test_every_optional_requirement_of_the_client_has_a_scenario() -> None:
    """Conditional SHALLs and MAYs are judged once an ICS declares their feature."""
    covered = scenarios_by_requirement([s for s in SPECS if s.side == "C"])
    missing = [r for r, q in REGISTRY.requirements.items() if "C" in q.roles and r not in covered]
    assert not missing, missing


@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_scenario_judges_only_its_own_role(spec: ScenarioSpec) -> None:
    """Client-mode scenarios judge role C requirements, server-mode ones role S."""
    foreign = [r for r in spec.requirements if spec.side not in REGISTRY[r].roles]
    assert not foreign, f"{spec.feature_file} judges role {spec.side}, not {foreign}"


def test_optional_requirements_live_in_scenarios_of_their_own() -> None:
    """An undeclared optional feature skips the whole scenario: it must not hide others."""
    for spec in SPECS:
        optional = {r for r in spec.requirements if REGISTRY[r].feature}
        assert not optional or optional == spec.requirements, _id(spec)


def test_each_requirement_has_a_scenario_in_its_group_file() -> None:
    table: dict[str, set[str]] = {}
    for spec in SPECS:
        for req in spec.requirements:
            table.setdefault(req, set()).add(group_of(spec.feature_file))
    misplaced = {r: g for r, g in table.items() if REGISTRY[r].group not in g}
    assert not misplaced, f"requirement -> files, none of them its group: {misplaced}"


def test_registry_scenario_lists_agree_with_the_features() -> None:
    """The ``scenarios:`` lists are computed; any that are filled in must agree."""
    document = yaml.safe_load(REGISTRY_FILE.read_text(encoding="utf-8"))
    computed = scenarios_by_requirement(SPECS)
    for req, entry in document["requirements"].items():
        listed = entry.get("scenarios") or []
        assert not listed or sorted(listed) == sorted(computed.get(req, [])), req


def test_feature_files_are_named_after_groups() -> None:
    groups = {r.group for r in REGISTRY.requirements.values()}
    files = {group_of(p.name) for p in FEATURES_DIR.glob("*.feature")}
    assert files <= groups, f"feature files without a registry group: {files - groups}"


def test_the_registry_is_closed() -> None:
    assert closure_problems(REGISTRY, SPECS) == []


BROKEN = """
Feature: broken
  @AOI-OLC-999
  Scenario: cites an unknown requirement
    Then something holds [AOI-OLC-999]

  @AOI-OLC-001
  Scenario: tags a requirement no step names
    Then something holds

  Scenario: names a requirement it does not tag
    Then something holds [AOI-OLC-001]
"""


def test_the_closure_check_catches_defects(tmp_path: Path) -> None:
    (tmp_path / "broken.feature").write_text(BROKEN, encoding="utf-8")
    problems = "\n".join(closure_problems(REGISTRY, load_scenarios(tmp_path)))
    assert "unknown requirements ['AOI-OLC-999']" in problems
    assert "tags ['AOI-OLC-001'] but no step names it" in problems
    assert "names ['AOI-OLC-001'] without the tag" in problems
    assert "tags no requirement" in problems
    # Only three scenarios, so nearly every SHALL of the server lacks one.
    assert "AOI-DEL-001 (SHALL, role S) has no scenario" in problems
    # ... and every SHALL of the client lacks one in client mode.
    assert "AOI-OLC-005 (SHALL, role C) has no scenario in client mode" in problems
    assert "AOI-DEL-003 (SHALL, role S/C) has no scenario in client mode" in problems


CLIENT_ONLY_IN_SERVER_MODE = """
Feature: a server-mode file judging a client requirement
  @AOI-OLC-005
  Scenario: judges the wrong role
    Then something holds [AOI-OLC-005]
"""


def test_the_closure_check_catches_a_scenario_of_the_wrong_role(tmp_path: Path) -> None:
    (tmp_path / "overload.feature").write_text(CLIENT_ONLY_IN_SERVER_MODE, encoding="utf-8")
    problems = "\n".join(closure_problems(REGISTRY, load_scenarios(tmp_path)))
    assert "tags ['AOI-OLC-005'], which do not bind role S" in problems


def test_client_mode_files_cover_every_shall_of_the_client() -> None:
    problems = closure_problems(REGISTRY, SPECS, frozenset({"C"}))
    assert problems == []
