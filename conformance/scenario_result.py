"""A scenario's result as the run keeps it (:class:`ScenarioResult`): its verdict, the
outcome of each requirement it proves, and how pytest and Allure show it; and the
scenario's name as written in its feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from conformance import allure_results
from conformance.verdicts import Outcome, Verdict

# How a scenario's verdict shows in pytest's and Allure's terms.
STATUS = {
    Verdict.PASS: "passed",
    Verdict.WARN: "passed",
    Verdict.FAIL: "failed",
    Verdict.ERROR: "broken",
    Verdict.BLOCKED: "broken",
    Verdict.NA: "skipped",
}


@dataclass
class ScenarioResult:
    nodeid: str
    name: str
    feature_file: str
    requirements: list[str]
    status: str  # passed, failed, broken, skipped
    verdict: Verdict
    outcomes: dict[str, Outcome]
    message: str = ""
    wirelog: str = ""  # path relative to the reports directory
    duration_s: float = 0.0


def teststatus(result: ScenarioResult) -> tuple[str, str, tuple[str, dict[str, bool]]]:
    """How pytest shows ``result``: its category, its letter, and with ``-v`` its verdict
    and requirements in the category's colour."""
    category, letter = {
        "passed": ("passed", "."),
        "failed": ("failed", "F"),
        "broken": ("error", "E"),
        "skipped": ("skipped", "s"),
    }[result.status]
    colour = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow"}
    word = f"{result.verdict.value} {' '.join(result.requirements)}"
    return category, letter, (word, {colour[category]: True})


def recorded(report: pytest.TestReport) -> bool:
    """Whether ``report`` is the one that ends a scenario: its call, or a setup that failed."""
    return report.when == "call" or (report.when == "setup" and not report.passed)


def template_of(item: pytest.Item) -> Any:
    from pytest_bdd.scenario import scenario_wrapper_template_registry

    function = getattr(item, "function", None)
    return None if function is None else scenario_wrapper_template_registry.get(function)


def scenario_name(item: pytest.Item) -> str:
    """The scenario's name as written; a row of an outline adds its example values."""
    template = template_of(item)
    if template is None:
        return item.name
    example = allure_results.example_of(item)
    if not example:
        return str(template.name)
    return f"{template.name} ({', '.join(f'{k}: {v}' for k, v in example.items())})"
