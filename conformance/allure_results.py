"""How a run reads in Allure: as a certification body's report.

Each scenario's result carries the behaviour labels ``epic`` (the interfaces it spoke:
AOI-1, AOI-2, AOI-3, AOI-P), ``feature`` (the requirement groups it judges) and ``story``
(the requirement IDs), a ``severity`` from the strongest level (SHALL critical, SHOULD
normal, MAY minor), the suite's own labels (``requirement``, ``role``, ``level``,
``verdict``), a link to each requirement's row of the statement, and a description that
opens with the verdict of each requirement and why. Its status is the verdict's: FAIL
failed, ERROR or BLOCKED broken, PASS or WARN passed, N/A skipped, with a message that
starts with the verdict, which ``categories.json`` sorts into product defects, targets
unreachable or blocked, and errors of the suite or its environment. ``environment.properties``
names the target, the ICS, the suite and the timeout scale.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import allure
import allure_commons
import pytest
from allure_commons.model2 import Status, StatusDetails

from conformance.registry import Registry
from conformance.verdicts import Verdict
from conformance.wirelog import WireLog

if TYPE_CHECKING:
    from conformance.runtime import Runtime
    from conformance.scenario_result import ScenarioResult

# Relative to reports/allure-report/index.html: the requirement's row in the statement.
REQUIREMENT_LINK = "../conformance.html#{}"
SEVERITY = {"SHALL": "critical", "SHOULD": "normal", "MAY": "minor"}
INTERFACES = {  # wire log channel -> interface
    "aoi1": "AOI-1",
    "aoi2": "AOI-2",
    "aoi3": "AOI-3",
    "health": "AOI-3",
    "http": "AOI-3",
    "aoi-p": "AOI-P",
}
STATUS = {
    Verdict.PASS: Status.PASSED,
    Verdict.WARN: Status.PASSED,
    Verdict.FAIL: Status.FAILED,
    Verdict.ERROR: Status.BROKEN,
    Verdict.BLOCKED: Status.BROKEN,
    Verdict.NA: Status.SKIPPED,
}
CATEGORIES = [
    {
        "name": "Product defects (FAIL)",
        "description": "The implementation violated a requirement it is bound by.",
        "matchedStatuses": ["failed"],
        "messageRegex": "(?s)FAIL.*",
    },
    {
        "name": "Target unreachable or blocked (not judged)",
        "description": "No connection, a connection lost, or a precondition the target "
        "failed: the scenario stopped before it could judge. Not certified.",
        "matchedStatuses": ["broken"],
        "messageRegex": "(?s)BLOCKED.*",
    },
    {
        "name": "Suite or environment errors",
        "description": "The suite, its IXIT or the test environment broke, not the target.",
        "matchedStatuses": ["broken"],
        "messageRegex": "(?s)ERROR.*",
    },
]


def start(registry: Registry, reqs: list[str]) -> None:
    """The labels and links known when a scenario starts."""
    requirements = [registry[req] for req in reqs]
    for group in sorted({r.group for r in requirements if r.group}):
        allure.dynamic.feature(group)
    levels = {r.level.value for r in requirements}
    strongest = next((lvl for lvl in SEVERITY if lvl in levels), None)
    if strongest is not None:
        allure.dynamic.severity(SEVERITY[strongest])
    for requirement in requirements:
        allure.dynamic.story(requirement.id)
        allure.dynamic.label("requirement", requirement.id)
        allure.dynamic.link(
            REQUIREMENT_LINK.format(requirement.id), name=f"{requirement.id}: {requirement.text}"
        )
    for role in sorted({role for r in requirements for role in r.roles}):
        allure.dynamic.label("role", role)
    for level in sorted(levels):
        allure.dynamic.label("level", level)


def finish(registry: Registry, result: ScenarioResult, wirelog: WireLog | None) -> None:
    """What the scenario's end tells: the interfaces it spoke, its verdicts (label,
    description, attachment) and its wire log."""
    channels = {e.channel.split(" ", 1)[0] for e in wirelog.entries()} if wirelog else set()
    for epic in sorted({INTERFACES[c] for c in channels if c in INTERFACES}):
        allure.dynamic.epic(epic)
    allure.dynamic.label("verdict", result.verdict.value)
    allure.dynamic.description_html(_verdict_html(registry, result))
    lines = [f"{req} {o.verdict.value}: {o.explanation}" for req, o in result.outcomes.items()]
    allure.attach(
        "\n".join(lines) + "\n", name="verdicts", attachment_type=allure.attachment_type.TEXT
    )
    if wirelog is not None:
        allure.attach(
            wirelog.render(), name="wire log", attachment_type=allure.attachment_type.TEXT
        )


def _verdict_html(registry: Registry, result: ScenarioResult) -> str:
    e = html.escape
    rows = []
    for req, outcome in result.outcomes.items():
        requirement = registry[req]
        rows.append(
            f"<tr><td><b>{e(outcome.verdict.value)}</b></td><td>{e(req)} "
            f"({e(requirement.level.value)})</td><td>{e(requirement.text)}"
            f"<br><i>{e(outcome.explanation)}</i></td></tr>"
        )
    return (
        f"<p><b>Verdict: {e(result.verdict.value)}</b></p>"
        f"<table><tr><th>Verdict</th><th>Requirement</th><th>Text, and why</th></tr>"
        f"{''.join(rows)}</table>"
    )


def example_of(item: pytest.Item) -> dict[str, str]:
    """The example values of a row of a scenario outline (empty for a plain scenario)."""
    callspec = getattr(item, "callspec", None)
    example = callspec.params.get("_pytest_bdd_example", {}) if callspec is not None else {}
    return {str(k): str(v) for k, v in example.items()}


class StatusFromVerdict:
    """An allure-commons plugin: each result's status and message come from its verdict
    (the ``verdict`` label), not from the type of the exception that ended it."""

    @allure_commons.hookimpl(tryfirst=True)
    def report_result(self, result: Any) -> None:
        verdict = next((Verdict(lbl.value) for lbl in result.labels if lbl.name == "verdict"), None)
        if verdict is None:
            return
        result.status = STATUS[verdict]
        details = result.statusDetails or StatusDetails()
        message = _EXCEPTION_TYPE.sub("", details.message or "", count=1)
        if verdict is not Verdict.PASS:
            details.message = f"{verdict.value}: {message}" if message else verdict.value
            result.statusDetails = details


_EXCEPTION_TYPE = re.compile(r"^[A-Za-z_][\w.]*: ")  # "conformance.verdicts.X: " of exconly()


def register(config: pytest.Config) -> None:
    """Put :class:`StatusFromVerdict` in place for this run (and take it away after)."""
    plugin = StatusFromVerdict()
    allure_commons.plugin_manager.register(plugin)
    config.add_cleanup(lambda: allure_commons.plugin_manager.unregister(plugin))
    _title_path_outside_rootdir()


def _title_path_outside_rootdir() -> None:
    """allure-pytest-bdd places a scenario by its feature file relative to pytest's rootdir
    and fails (ValueError) for a feature outside it, which every feature is when the suite
    runs from its wheel (site-packages). There, the place is the features/ of the suite."""
    try:
        from allure_pytest_bdd import pytest_bdd_listener
    except ImportError:  # pragma: no cover - a dependency of the suite
        return
    original = getattr(pytest_bdd_listener, "get_title_path", None)
    if original is None or getattr(original, "outside_rootdir", False):
        return

    def title_path(request: pytest.FixtureRequest, feature: Any) -> list[str]:
        try:
            return list(original(request, feature))
        except ValueError:
            return ["features", feature.name or Path(feature.filename).name]

    title_path.outside_rootdir = True  # type: ignore[attr-defined]
    pytest_bdd_listener.get_title_path = title_path


def write_run_files(config: pytest.Config, runtime: Runtime, statement: dict[str, Any]) -> None:
    """``categories.json`` and ``environment.properties`` beside the results."""
    results = getattr(config.option, "allure_report_dir", None)
    if not results:
        return
    out = Path(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "categories.json").write_text(json.dumps(CATEGORIES, indent=2) + "\n", encoding="utf-8")
    suite, ics = statement["suite"], statement["ics"]
    properties = {
        "Target": runtime.target_label,
        "Mode": runtime.mode,
        "ICS": f"{ics['implementation']} {ics['version']} by {ics['vendor']}; roles "
        f"{','.join(ics['roles'])}; features {','.join(ics['features']) or 'none'}",
        "Suite": f"{suite['name']} {suite['version']}",
        "Suite.sha256": suite["sha256"]["features+schemas"],
        "Timeout.scale": str(runtime.timeout_scale),
        "Result": statement["result"],
    }
    lines = [f"{key}={_escape(value)}" for key, value in properties.items()]
    (out / "environment.properties").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _escape(value: str) -> str:
    """A value of a Java properties file (Allure reads it so)."""
    return value.replace("\\", "\\\\").replace("\n", " ").replace(":", "\\:").replace("=", "\\=")
