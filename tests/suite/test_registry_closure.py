"""The registry is closed: features cite only known requirements, and every SHALL of a
role the suite certifies has a scenario that checks it."""

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
    load_registry,
    load_scenarios,
    scenarios_by_requirement,
)

ROLES_UNDER_TEST = {"S"}  # client mode (role C) has no scenarios yet
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
    stray = {t for t in spec.tags if not REQUIREMENT_TAG.match(t)} - OTHER_TAGS
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
    "req",
    [
        r
        for r, q in REGISTRY.requirements.items()
        if q.level is Level.SHALL and q.feature is None and set(q.roles) & ROLES_UNDER_TEST
    ],
)
def test_every_shall_of_the_server_has_a_scenario(req: str) -> None:
    assert req in scenarios_by_requirement(SPECS), f"{req} (SHALL, role S) has no scenario"


def test_optional_requirements_live_in_scenarios_of_their_own() -> None:
    """An undeclared optional feature skips the whole scenario: it must not hide others."""
    for spec in SPECS:
        optional = {r for r in spec.requirements if REGISTRY[r].feature}
        assert not optional or optional == spec.requirements, _id(spec)


def test_each_requirement_has_a_scenario_in_its_group_file() -> None:
    table: dict[str, set[str]] = {}
    for spec in SPECS:
        for req in spec.requirements:
            table.setdefault(req, set()).add(Path(spec.feature_file).stem)
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
    files = {p.stem for p in FEATURES_DIR.glob("*.feature")}
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
