"""The conformance run: registered as a pytest plugin only when the suite is active.

It checks and applies the selection, looks before any scenario at whether the target is
there (:mod:`conformance.preflight`), gates optional features (N/A), turns each
scenario's checks into verdicts, labels the Allure results (:mod:`conformance.allure_results`),
keeps the wire logs, and at the end writes the conformance statement
(:mod:`conformance.report`) and says the result in one line.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conformance import allure_results, preflight
from conformance.client_target import ClientMode, generated_identity, parse_client_target
from conformance.driver.portal import Portal
from conformance.ixit import Ixit
from conformance.options import selection
from conformance.registry import CITATION, REQUIREMENT_TAG, Registry, side_of
from conformance.scenario_result import (
    STATUS,
    ScenarioResult,
    recorded,
    scenario_name,
    template_of,
    teststatus,
)
from conformance.targets import Targets
from conformance.verdicts import (
    Outcome,
    SuiteDefect,
    TargetUnreachable,
    Verdict,
    scenario_verdict,
)
from conformance.world import World

WORLD = pytest.StashKey[World]()
STEP_ERROR = pytest.StashKey[BaseException]()
STARTED = pytest.StashKey[bool]()
IN_STEP = pytest.StashKey[bool]()  # a step began and has not ended well (yet)
RUNTIME_NAME = "aoi-conformance-runtime"
DISRUPTIVE = "disruptive"  # scenarios that leave the target changed run last


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
    # What the preflight found unreachable: a profile, "restart command", "client command".
    unreachable: dict[str, str] = field(default_factory=dict)
    not_started: str = ""  # why the embedded reference could not be started
    note: str = ""  # said at the start and the end (a complete statement moved aside)
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

    def adopt(self, ixit: Ixit, document: dict[str, Any]) -> None:
        """Use ``ixit`` (and the AOI Client of its ``[client]``): the embedded run's, once
        its lab is up."""
        self.ixit = ixit
        target = parse_client_target(document, None, generated_identity())
        if target is not None:
            self.client = ClientMode(target, self.reports_dir / "clients")

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        lines = [f"AOI conformance: {self.target_label}; reports in {self.reports_dir}"]
        return [*lines, f"AOI conformance: {self.note}"] if self.note else lines

    # --- collection ------------------------------------------------------------------

    def requirements_of(self, item: pytest.Item) -> list[str]:
        return sorted({m.name for m in item.iter_markers() if REQUIREMENT_TAG.match(m.name)})

    @staticmethod
    def feature_file_of(item: pytest.Item) -> str:
        template = template_of(item)
        return Path(template.feature.filename).name if template is not None else ""

    @staticmethod
    def steps_of(item: pytest.Item) -> list[str]:
        template = template_of(item)
        return [step.name for step in template.steps] if template is not None else []

    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        wanted_reqs, wanted_features = selection(config)
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

    # --- before any scenario ---------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        """Start what the run starts and look whether the target is there, once, before
        the first scenario; say in one line what is not."""
        if session.config.option.collectonly or not session.items:
            return
        needs = preflight.Needs()
        for item in session.items:
            side = side_of(self.feature_file_of(item))
            if not self.not_applicable(self.requirements_of(item), side):
                needs.add(side, self.steps_of(item))
        start = getattr(self.targets, "start", None)
        if start is not None:  # the embedded run: its lab, with the profiles it needs
            try:
                self.adopt(*start(needs.profiles))
            except Exception as e:  # the reference would not start: nothing is judged
                self.not_started = f"the embedded reference could not be started: {e}"
        if not self.not_started:
            self.unreachable = self._probe(needs)
        line = self.not_started or (self.unreachable and preflight.describe(self.unreachable))
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if line and reporter is not None:
            reporter.write_line(f"AOI conformance: {line}; its scenarios are ERROR, not run")

    def _probe(self, needs: preflight.Needs) -> dict[str, str]:
        endpoints = {}
        for profile in sorted(needs.profiles):
            try:
                endpoints[profile] = self.targets.endpoint(profile)
            except Exception:  # a profile the IXIT does not give: its scenario says so
                continue
        restart = self.ixit.restart_command if needs.restart else ""
        client = self.client.target.command if needs.client and self.client else ""
        return preflight.unreachable(
            endpoints,
            restart_command=restart,
            client_command=client,
            timeout_scale=self.timeout_scale,
        )

    def blocked(self, item: pytest.Item, side: str) -> str:
        """Why the scenario cannot run: what it needs is unreachable ('' when it can)."""
        if self.not_started:
            return self.not_started
        if side == "C":
            reason = self.unreachable.get(preflight.CLIENT)
            return f"the AOI Client under test cannot start: {reason}" if reason else ""
        steps = self.steps_of(item)
        profile = preflight.profile_of(steps)
        if profile in self.unreachable:
            return f"target unreachable: {profile} {self.unreachable[profile]}"
        restart = self.unreachable.get(preflight.RESTART)
        if restart and preflight.CRASH_STEP in steps:
            return f"the [restart] command cannot run: {restart}"
        return ""

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
                    f"optional feature {requirement.feature!r} ({req}, {requirement.level}) "
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
        allure_results.start(self.registry, reqs)
        side = side_of(self.feature_file_of(item))
        reason = self.not_applicable(reqs, side)
        if reason:
            pytest.skip(reason)
        reason = self.blocked(item, side)
        if reason:
            world = item.stash.get(WORLD, None)
            if world is not None:  # its wire log says why it holds nothing else
                world.wirelog.add("suite", "--", f"not run: {reason}")
            raise TargetUnreachable(reason)

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
        if recorded(report):
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
        elif world is None:
            outcomes = {r: Outcome(Verdict.ERROR, f"{type(error).__name__}: {error}") for r in reqs}
        else:
            outcomes = world.verdicts.outcomes(error)
        verdict = scenario_verdict(outcomes)
        wirelog = self._write_wirelog(item, world) if world is not None else ""
        message = ""
        if error is not None:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            exited: dict[str, int] = getattr(self.targets, "exited", dict)()
            if exited:  # a dead embedded server explains every failure after it
                message += f" (embedded servers that exited: {exited}; see reports/embedded/)"
            code = world.notes.get("client exited") if world is not None else None
            if code is not None:  # so does an AOI Client under test that died
                message += f" (the AOI Client under test exited with {code}; see reports/clients/)"
        result = ScenarioResult(
            nodeid=item.nodeid,
            name=scenario_name(item),
            feature_file=self.feature_file_of(item),
            requirements=reqs,
            status=STATUS[verdict],
            verdict=verdict,
            outcomes=outcomes,
            message=message,
            wirelog=wirelog,
            duration_s=round(report.duration, 3),
        )
        self.results[item.nodeid] = result
        if item.stash.get(STARTED, False):  # Allure knows the scenario only once it started
            allure_results.finish(
                self.registry, result, world.wirelog if world is not None else None
            )

    def _write_wirelog(self, item: pytest.Item, world: World) -> str:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid.split("::", 1)[-1])[:150]
        path = self.reports_dir / "wire" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(world.wirelog.render(), encoding="utf-8")
        return path.relative_to(self.reports_dir).as_posix()

    # --- what pytest shows -----------------------------------------------------------

    def pytest_report_teststatus(
        self, report: pytest.TestReport, config: pytest.Config
    ) -> tuple[str, str, str | tuple[str, dict[str, bool]]] | None:
        """A scenario's verdict, not pytest's outcome: ``E`` for one that could not judge
        (pytest's "error"), ``F`` for a FAIL; with ``-v`` its verdict and requirements."""
        result = self.results.get(report.nodeid)
        if result is None or not recorded(report):
            return None
        return teststatus(result)

    # --- end -------------------------------------------------------------------------

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        try:
            if self.results:  # a run that judged nothing writes nothing, and says so
                from conformance.report import write_reports

                statement = write_reports(self)
                allure_results.write_run_files(self.config, self, statement)
        finally:
            self.close()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """What the statement says that needs reading (:func:`conformance.report.summary`).
        The result itself is the run's last line (unconfigure)."""
        from conformance.report import summary

        if self.config.option.collectonly or not self.results:
            return
        lines = summary(self)
        terminalreporter.section("AOI conformance")
        for line in lines:
            terminalreporter.write_line(line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """The run's last line: the result and the counts of the statement."""
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or config.option.collectonly:
            return
        if not self.results:
            if not self.selected:
                reporter.write_line("AOI conformance: no scenario selected; no statement written")
            return
        from conformance.report import result_line

        reporter.write_line(result_line(self.reports_dir / "conformance.json"), bold=True)
