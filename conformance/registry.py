"""The requirement registry (features/requirements.yaml) and the Gherkin features that cite it.

The registry is closed: every tag of the form ``AOI-XXX-NNN`` on a scenario must name a
requirement here, and every SHALL requirement of a role under test must have a scenario.
The scenario lists of the registry are computed from the features, not kept by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, cast

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    """``name``/ of the suite: inside the package when installed from its wheel, beside
    it in a checkout of the repository."""
    packaged = PACKAGE_DIR / name
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / name


FEATURES_DIR = _data_dir("features")
REGISTRY_FILE = FEATURES_DIR / "requirements.yaml"
REQUIREMENT_TAG = re.compile(r"^AOI-[A-Z]+-\d{3}$")
CLIENT_PREFIX = "client_"  # features/client_<group>.feature: client mode (role C)
CITATION = re.compile(r"\[(AOI-[A-Z]+-\d{3})\]")


def side_of(feature_file: str) -> str:
    """The role a feature file's scenarios judge: ``C`` for ``client_*.feature`` (the suite
    plays servers, provisioning and apps), ``S`` otherwise (the suite plays clients)."""
    return "C" if Path(feature_file).name.startswith(CLIENT_PREFIX) else "S"


def group_of(feature_file: str) -> str:
    """The registry group a feature file holds scenarios of (its stem, without ``client_``)."""
    return Path(feature_file).stem.removeprefix(CLIENT_PREFIX)


class Level(StrEnum):
    SHALL = "SHALL"
    SHOULD = "SHOULD"
    MAY = "MAY"


@dataclass(frozen=True, slots=True)
class Requirement:
    id: str
    level: Level
    roles: tuple[str, ...]
    text: str
    source: str
    group: str
    feature: str | None = None  # optional feature (MAY, or conditional SHALL)

    def applies(self, roles: frozenset[str], features: frozenset[str]) -> bool:
        """Whether an implementation of ``roles`` claiming ``features`` is bound by it."""
        if not roles.intersection(self.roles):
            return False
        return self.feature is None or self.feature in features

    @property
    def binding(self) -> Level:
        """How a violation counts once the requirement applies: MAY and conditional SHALL
        bind like SHALL when their feature is declared."""
        return Level.SHOULD if self.level is Level.SHOULD else Level.SHALL


@dataclass(frozen=True, slots=True)
class Registry:
    version: int
    features: dict[str, str]
    requirements: dict[str, Requirement]

    def __getitem__(self, req: str) -> Requirement:
        return self.requirements[req]

    def __contains__(self, req: object) -> bool:
        return req in self.requirements


def _requirement(rid: str, entry: dict[str, Any]) -> Requirement:
    return Requirement(
        id=rid,
        level=Level(entry["level"]),
        roles=tuple(entry["role"]),
        text=" ".join(str(entry["text"]).split()),
        source=str(entry.get("source", "")),
        group=str(entry.get("group", "")),
        feature=entry.get("feature"),
    )


@cache
def load_registry(path: Path = REGISTRY_FILE) -> Registry:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    requirements = {rid: _requirement(rid, e) for rid, e in document["requirements"].items()}
    for rid, requirement in requirements.items():
        if not REQUIREMENT_TAG.match(rid):
            raise ValueError(f"{path}: malformed requirement id {rid!r}")
        if requirement.feature is not None and requirement.feature not in document["features"]:
            raise ValueError(f"{path}: {rid} names unknown feature {requirement.feature!r}")
    return Registry(
        version=int(document["version"]),
        features=dict(document["features"]),
        requirements=requirements,
    )


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """One scenario (one row of an outline) as written: its tags and its step texts."""

    feature_file: str  # name relative to features/
    feature: str
    name: str
    tags: frozenset[str]
    steps: tuple[str, ...]
    example: dict[str, str] = field(default_factory=dict)

    @property
    def requirements(self) -> frozenset[str]:
        return frozenset(t for t in self.tags if REQUIREMENT_TAG.match(t))

    @property
    def side(self) -> str:
        return side_of(self.feature_file)

    @property
    def cited(self) -> frozenset[str]:
        """Requirement ids that the steps name (``[AOI-XXX-NNN]``)."""
        return frozenset(m for s in self.steps for m in CITATION.findall(s))


def _tags(node: dict[str, Any]) -> set[str]:
    return {t["name"].lstrip("@") for t in node.get("tags", [])}


def _render(text: str, example: dict[str, str]) -> str:
    for key, value in example.items():
        text = text.replace(f"<{key}>", value)
    return text


def _scenarios_of(path: Path, features_dir: Path) -> list[ScenarioSpec]:
    from gherkin.parser import Parser

    document: dict[str, Any] = cast(Any, Parser().parse(path.read_text(encoding="utf-8")))
    feature = document.get("feature")
    if feature is None:
        return []
    feature_tags = _tags(feature)
    background: list[str] = []
    found: list[ScenarioSpec] = []

    def visit(children: list[dict[str, Any]], inherited: set[str]) -> None:
        nonlocal background
        for child in children:
            if "background" in child:
                background = [s["text"] for s in child["background"]["steps"]]
            elif "rule" in child:
                visit(child["rule"]["children"], inherited | _tags(child["rule"]))
            elif "scenario" in child:
                found.extend(_expand(child["scenario"], inherited, background))

    def _expand(
        scenario: dict[str, Any], inherited: set[str], background: list[str]
    ) -> list[ScenarioSpec]:
        tags = inherited | _tags(scenario)
        steps = background + [s["text"] for s in scenario["steps"]]
        base = {
            "feature_file": path.relative_to(features_dir).as_posix(),
            "feature": feature["name"],
            "name": scenario["name"],
        }
        if not scenario.get("examples"):
            return [ScenarioSpec(**base, tags=frozenset(tags), steps=tuple(steps))]
        rows: list[ScenarioSpec] = []
        for examples in scenario["examples"]:
            header = [c["value"] for c in examples["tableHeader"]["cells"]]
            for row in examples.get("tableBody", []):
                example = dict(zip(header, (c["value"] for c in row["cells"]), strict=True))
                rows.append(
                    ScenarioSpec(
                        **base,
                        tags=frozenset(tags | _tags(examples)),
                        steps=tuple(_render(s, example) for s in steps),
                        example=example,
                    )
                )
        return rows

    visit(feature["children"], feature_tags)
    return found


def load_scenarios(features_dir: Path = FEATURES_DIR) -> list[ScenarioSpec]:
    """Every scenario of every feature file, in file order."""
    return [
        s
        for path in sorted(features_dir.rglob("*.feature"))
        for s in _scenarios_of(path, features_dir)
    ]


def scenarios_by_requirement(specs: list[ScenarioSpec]) -> dict[str, list[str]]:
    """The computed ``scenarios:`` lists of the registry: requirement -> scenario names."""
    table: dict[str, list[str]] = {}
    for spec in specs:
        for req in sorted(spec.requirements):
            names = table.setdefault(req, [])
            if spec.name not in names:
                names.append(spec.name)
    return table


# Tags besides requirement IDs, and what they mean (pytest markers of the suite's runs).
OTHER_TAGS = {
    "disruptive": "leaves the target changed; runs last",
    "slow": "takes more than a few seconds (a timer of the target is watched)",
}


def closure_problems(
    registry: Registry, specs: list[ScenarioSpec], roles: frozenset[str] = frozenset({"S", "C"})
) -> list[str]:
    """Why the features and the registry do not close over each other (empty: they do).

    A scenario may cite (tag or name in a step) only known requirements, must name in a
    step every requirement it tags and tag every one it names, and may tag only
    requirements of the role its file judges (client_*.feature: C, others: S); every
    unconditional SHALL requirement of the roles under test needs a scenario of each of
    its roles (server mode for S, client mode for C).
    """
    problems: list[str] = []
    for spec in specs:
        where = f"{spec.feature_file}: {spec.name!r}"
        unknown = (spec.requirements | spec.cited) - set(registry.requirements)
        if unknown:
            problems.append(f"{where} cites unknown requirements {sorted(unknown)}")
        stray = {t for t in spec.tags if not REQUIREMENT_TAG.match(t)} - OTHER_TAGS.keys()
        if stray:
            problems.append(f"{where} has unknown tags {sorted(stray)}")
        if not spec.requirements:
            problems.append(f"{where} tags no requirement")
        if spec.requirements - spec.cited:
            problems.append(
                f"{where} tags {sorted(spec.requirements - spec.cited)} but no step names it"
            )
        if spec.cited - spec.requirements:
            problems.append(
                f"{where} names {sorted(spec.cited - spec.requirements)} without the tag"
            )
        foreign = sorted(
            r for r in spec.requirements - unknown if spec.side not in registry[r].roles
        )
        if foreign:
            problems.append(f"{where} tags {foreign}, which do not bind role {spec.side}")
    for side in sorted(roles):
        covered = scenarios_by_requirement([s for s in specs if s.side == side])
        for req, requirement in registry.requirements.items():
            binding = requirement.level is Level.SHALL and requirement.feature is None
            if binding and side in requirement.roles and req not in covered:
                label = "/".join(requirement.roles)
                mode = "" if side == "S" else " in client mode"
                problems.append(f"{req} (SHALL, role {label}) has no scenario{mode}")
    return problems
