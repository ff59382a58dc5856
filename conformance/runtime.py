"""The conformance run: registered as a pytest plugin only when the suite is active.

It filters and orders the scenarios, gates optional features (N/A), turns each
scenario's checks into verdicts, labels the Allure results, keeps the wire logs, and at
the end writes the conformance statement (:mod:`conformance.report`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conformance.client_target import ClientMode
from conformance.driver.portal import Portal
from conformance.ixit import Ixit
from conformance.registry import CITATION, REQUIREMENT_TAG, Registry, side_of
from conformance.targets import Targets
from conformance.verdicts import Outcome, SuiteDefect, Verdict, scenario_verdict
from conformance.world import World

WORLD = pytest.StashKey[World]()
STEP_ERROR = pytest.StashKey[BaseException]()
STARTED = pytest.StashKey[bool]()
IN_STEP = pytest.StashKey[bool]()  # a step began and has not ended well (yet)
RUNTIME_NAME = "aoi-conformance-runtime"
DISRUPTIVE = "disruptive"  # scenarios that leave the target changed run last
# Relative to reports/allure-report/index.html: the requirement's row in the statement.
REQUIREMENT_LINK = "../conformance.html#{}"


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


@dataclass(repr=False)
class Runtime:
    config: pytest.Config
    registry: Registry
    ixit: Ixit
    targets: Targets
    mode: str  # "embedded", "server", "client" or "server+client"
    target_label: str
    timeout_scale: float
    reports_dir: Path
    client: ClientMode | None = None  # client mode: the AOI Client under test
    results: dict[str, ScenarioResult] = field(default_factory=dict)
    selected: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    _portal: Portal | None = None

    def __repr__(self) -> str:
        return f"Runtime({self.mode}, {self.target_label!r})"

    @property
    def portal(self) -> Portal:
        if self._portal is None:
            self._portal = Portal()
        return self._portal

    def close(self) -> None:
        try:
            self.targets.close()
        finally:
            if self._portal is not None:
                self._portal.close()
                self._portal = None
            if self.client is not None:
                self.client.close()

    def secrets(self) -> list[str]:
        """Every secret the wire log must not show: the IXIT's, and the client's under test."""
        found = list(self.ixit.secrets())
        if self.client is not None:
            found.append(self.client.target.credential)
        return sorted({s for s in found if s}, key=len, reverse=True)

    # --- collection ------------------------------------------------------------------

    def requirements_of(self, item: pytest.Item) -> list[str]:
        return sorted({m.name for m in item.iter_markers() if REQUIREMENT_TAG.match(m.name)})

    @staticmethod
    def feature_file_of(item: pytest.Item) -> str:
        from pytest_bdd.scenario import scenario_wrapper_template_registry

        template = scenario_wrapper_template_registry.get(getattr(item, "function", None))
        if template is None:
            return ""
        return Path(template.feature.filename).name

    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        wanted_reqs = set(config.getoption("requirement") or [])
        wanted_features = {
            Path(f).name.removesuffix(".feature") for f in config.option.features or []
        }
        unknown = wanted_reqs - set(self.registry.requirements)
        if unknown:
            raise pytest.UsageError(f"--requirement: unknown {sorted(unknown)}")
        keep: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        for item in items:
            reqs = set(self.requirements_of(item))
            stem = self.feature_file_of(item).removesuffix(".feature")
            ok = (not wanted_reqs or reqs & wanted_reqs) and (
                not wanted_features or stem in wanted_features
            )
            (keep if ok else dropped).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        # A stable order: file order, with scenarios that disturb the target last.
        keep.sort(key=lambda i: i.get_closest_marker(DISRUPTIVE) is not None)
        items[:] = keep
        self.selected = [i.nodeid for i in keep]

    # --- scenarios -------------------------------------------------------------------

    def not_applicable(self, reqs: list[str], side: str = "S") -> str:
        """Why the scenario does not apply to this target ('' when it does). ``side`` is the
        role the scenario judges: ``S`` (server mode) or ``C`` (client mode)."""
        if side not in self.ixit.ics.roles:
            if side == "C":
                return "client mode: no AOI Client under test (--target-client), role C not judged"
            return "server mode: no AOI Server under test (--target), role S not judged"
        for req in reqs:
            requirement = self.registry[req]
            if not set(requirement.roles) & self.ixit.ics.roles:
                return f"{req} binds role {'/'.join(requirement.roles)}, not under test"
            if requirement.feature and requirement.feature not in self.ixit.ics.features:
                return (
                    f"N/A: optional feature {requirement.feature!r} ({req}, {requirement.level}) "
                    "is not declared in the ICS"
                )
        return ""

    @pytest.hookimpl(trylast=True)
    def pytest_bdd_before_scenario(
        self, request: pytest.FixtureRequest, feature: Any, scenario: Any
    ) -> None:
        item = request.node
        item.stash[STARTED] = True
        reqs = self.requirements_of(item)
        _allure_static_labels(self, item, reqs)
        reason = self.not_applicable(reqs, side_of(self.feature_file_of(item)))
        if reason:
            pytest.skip(reason)

    def pytest_bdd_before_step(self, request: pytest.FixtureRequest, **_: Any) -> None:
        request.node.stash[IN_STEP] = True

    def pytest_bdd_after_step(self, request: pytest.FixtureRequest, **_: Any) -> None:
        request.node.stash[IN_STEP] = False

    def pytest_bdd_step_error(
        self,
        request: pytest.FixtureRequest,
        scenario: Any,
        step: Any,
        exception: BaseException,
        **_: Any,
    ) -> None:
        request.node.stash[STEP_ERROR] = exception
        world = request.node.stash.get(WORLD, None)
        if world is not None:  # what this step and the ones after it would have judged
            at = next((i for i, s in enumerate(scenario.steps) if s is step), 0)
            world.verdicts.unreached = frozenset(
                req for s in scenario.steps[at:] for req in CITATION.findall(s.name)
            )

    def pytest_bdd_step_func_lookup_error(
        self, request: pytest.FixtureRequest, exception: BaseException, **_: Any
    ) -> None:
        request.node.stash[STEP_ERROR] = exception

    def pytest_bdd_after_scenario(
        self, request: pytest.FixtureRequest, feature: Any, scenario: Any
    ) -> None:
        item = request.node
        world = item.stash.get(WORLD, None)
        if world is None:
            return
        # A step that raised (a failure, an error, or a skip: pytest-bdd reports no step
        # error for those) ends the scenario early: nothing is missing then.
        failed = STEP_ERROR in item.stash or item.stash.get(IN_STEP, False)
        try:
            world.finish()
        except Exception:
            if not failed:
                raise
            return
        if not failed:
            unchecked = world.verdicts.unchecked()
            if unchecked:
                raise SuiteDefect(
                    f"the scenario tags {', '.join(unchecked)} but made no check for it: "
                    "a defect of the suite"
                )

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, None]:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self._record(item, call, report)

    def _record(
        self, item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
    ) -> None:
        reqs = self.requirements_of(item)
        world = item.stash.get(WORLD, None)
        error = call.excinfo.value if call.excinfo else None
        if report.skipped:
            reason = str(error) if error else "skipped"
            outcomes = {r: Outcome(Verdict.NA, reason) for r in reqs}
            status = "skipped"
        elif world is None:
            outcomes = {r: Outcome(Verdict.ERROR, f"{type(error).__name__}: {error}") for r in reqs}
            status = "broken"
        else:
            outcomes = world.verdicts.outcomes(error)
            status = (
                "passed"
                if report.passed
                else "failed"
                if isinstance(error, AssertionError)
                else "broken"
            )
        verdict = scenario_verdict(outcomes)
        wirelog = ""
        if world is not None:
            wirelog = self._write_wirelog(item, world)
        if item.stash.get(STARTED, False):  # Allure knows the scenario only once it started
            lines = [f"{req} {o.verdict.value}: {o.explanation}" for req, o in outcomes.items()]
            _allure_attach("\n".join(lines) + "\n", "verdicts")
            if world is not None:
                _allure_attach(world.wirelog.render(), "wire log")
            _allure_label("verdict", verdict.value)
        message = ""
        if error is not None:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            exited = getattr(self.targets, "exited", dict)()
            if exited:  # a dead embedded server explains every failure after it
                message += f" (embedded servers that exited: {exited}; see reports/embedded/)"
            code = world.notes.get("client exited") if world is not None else None
            if code is not None:  # so does an AOI Client under test that died
                message += f" (the AOI Client under test exited with {code}; see reports/clients/)"
        self.results[item.nodeid] = ScenarioResult(
            nodeid=item.nodeid,
            name=_scenario_name(item),
            feature_file=self.feature_file_of(item),
            requirements=reqs,
            status=status,
            verdict=verdict,
            outcomes=outcomes,
            message=message,
            wirelog=wirelog,
            duration_s=round(report.duration, 3),
        )

    def _write_wirelog(self, item: pytest.Item, world: World) -> str:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid.split("::", 1)[-1])[:150]
        path = self.reports_dir / "wire" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(world.wirelog.render(), encoding="utf-8")
        return path.relative_to(self.reports_dir).as_posix()

    # --- end -------------------------------------------------------------------------

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        try:
            if not self.config.option.collectonly:
                from conformance.report import write_reports

                write_reports(self)
        finally:
            self.close()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from conformance.report import requirement_rows

        if self.config.option.collectonly:
            return
        rows = requirement_rows(self)
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
        terminalreporter.section("AOI conformance")
        terminalreporter.write_line(f"target: {self.target_label}")
        for row in rows:
            if row["verdict"] in ("FAIL", "ERROR", "WARN"):
                terminalreporter.write_line(f"{row['verdict']:5} {row['id']}: {row['explanation']}")
        summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        terminalreporter.write_line(f"requirements: {summary}")
        terminalreporter.write_line(f"statement: {self.reports_dir / 'conformance.json'}")


def _scenario_name(item: pytest.Item) -> str:
    from pytest_bdd.scenario import scenario_wrapper_template_registry

    template = scenario_wrapper_template_registry.get(getattr(item, "function", None))
    name = template.name if template is not None else item.name
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.id:
        name = f"{name} [{callspec.id}]"
    return name


def _allure_static_labels(runtime: Runtime, item: pytest.Item, reqs: list[str]) -> None:
    try:
        import allure
    except ImportError:  # pragma: no cover - allure-pytest-bdd is a dependency of the suite
        return
    stem = runtime.feature_file_of(item).removesuffix(".feature")
    allure.dynamic.label("feature", stem)
    for req in reqs:
        requirement = runtime.registry[req]
        allure.dynamic.label("requirement", req)
        allure.dynamic.link(REQUIREMENT_LINK.format(req), name=f"{req}: {requirement.text}")
    roles = sorted({r for req in reqs for r in runtime.registry[req].roles})
    levels = sorted({runtime.registry[req].level.value for req in reqs})
    for role in roles:
        allure.dynamic.label("role", role)
    for level in levels:
        allure.dynamic.label("level", level)


def _allure_label(name: str, value: str) -> None:
    try:
        import allure
    except ImportError:  # pragma: no cover
        return
    allure.dynamic.label(name, value)


def _allure_attach(text: str, name: str) -> None:
    try:
        import allure
    except ImportError:  # pragma: no cover
        return
    allure.attach(text, name=name, attachment_type=allure.attachment_type.TEXT)
