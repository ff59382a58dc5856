"""Run the conformance suite in a subprocess, against the embedded reference or a target
started here, and read its conformance statement. Broken-target variants start their
own server command (``command=``) and compare the verdicts with the faults they inject."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from conformance.embedded import Lab
from conformance.ixit import load_ixit, render_ixit
from conformance.registry import load_registry, load_scenarios
from conformance.verdicts import Verdict

ROOT = Path(__file__).resolve().parents[2]
# The console script of this environment, run as a user types it: ``pytest conformance``.
PYTEST = str(Path(sys.executable).with_name("pytest"))
# The suite's command. This checkout's own test tools (hypothesis, schemathesis) add pytest
# plugins that the suite's users do not have (the aoi-conformance wheel needs neither):
# they are left out as for those users, which also saves importing them (~3 s a run).
SUITE = (PYTEST, "conformance", "-p", "no:hypothesispytest", "-p", "no:schemathesis")

# The broken-target runs start processes from several threads at once; on this Linux VM
# an exec from vfork() then failed once with EFAULT ("Bad address"). The subprocess
# documentation offers this switch for such cases: plain fork() there.
subprocess._USE_VFORK = False  # type: ignore[misc]


@dataclass
class SuiteRun:
    returncode: int
    output: str
    statement: dict[str, Any]

    def verdicts(self) -> dict[str, str]:
        return {r["id"]: r["verdict"] for r in self.statement.get("requirements", [])}


@dataclass
class BrokenRun:
    """The suite's run against a target with one fault injected."""

    run: SuiteRun
    seconds: float
    workdir: Path

    def assert_judged(
        self,
        fault: str,
        role: str,
        fails: Mapping[str, str],
        blocked: Mapping[str, str],
        warns: Mapping[str, str] | None = None,
        judged: Collection[str] | None = None,
    ) -> None:
        """Exactly ``fails`` FAIL and ``warns`` WARN; ``blocked`` are ERROR because their
        scenarios stopped before judging them; every other requirement of ``role`` that the
        ICS makes applicable (and that the run ``judged``, when given) PASS, the rest N/A."""
        statement = self.run.statement
        assert statement, f"no statement:\n{self.run.output[-3000:]}"
        registry = load_registry()
        ics = statement["ics"]["features"]
        wrong: list[str] = []
        for row in statement["requirements"]:
            req, verdict = row["id"], row["verdict"]
            requirement = registry[req]
            applies = (
                role in requirement.roles
                and (not requirement.feature or requirement.feature in ics)
                and (judged is None or req in judged)
            )
            if req in fails:
                expected = Verdict.FAIL.value
            elif warns and req in warns:
                expected = Verdict.WARN.value
            elif req in blocked:
                expected = Verdict.ERROR.value
                scenario_verdicts = {s["verdict"] for s in row["scenarios"]}
                if verdict == expected and not scenario_verdicts <= {"PASS", "BLOCKED", "N/A"}:
                    verdict = f"ERROR not by blocking ({sorted(scenario_verdicts)})"
            else:
                expected = Verdict.PASS.value if applies else Verdict.NA.value
            if verdict != expected:
                wrong.append(f"{req}: {verdict}, expected {expected}: {row['explanation'][:300]}")
        counts = {k: n for k, n in statement["summary"].items() if n}
        print(f"{fault}: {self.seconds} s, {counts}")  # shown with -rP or -s
        assert not wrong, (
            f"{fault} ({self.seconds} s, {counts}; reports in {self.workdir}):\n" + "\n".join(wrong)
        )


def judged_by(features: Collection[str]) -> set[str]:
    """The requirements the scenarios of these feature files (by stem) judge."""
    return {
        r for s in load_scenarios() if Path(s.feature_file).stem in features for r in s.requirements
    }


@contextmanager
def broken_runs_in_background(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    certify: Callable[[Any, Path], BrokenRun],
    parallel: int,
) -> Iterator[dict[str, Future[BrokenRun]]]:
    """``certify(variant, workdir)`` for each variant the session selected in the calling
    test module, started at once, ``parallel`` at a time, in the order the tests will ask
    for them; by the variant's ``fault``."""
    wanted = [
        item.callspec.params["variant"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    ]
    with ThreadPoolExecutor(parallel, thread_name_prefix="broken") as pool:
        runs = {v.fault: pool.submit(certify, v, tmp_path_factory.mktemp(v.fault)) for v in wanted}
        try:
            yield runs
        finally:
            for future in runs.values():
                future.cancel()


def run_suite(reports: Path, *args: str, timeout: float = 600) -> SuiteRun:
    command = [*SUITE, "-p", "no:cacheprovider"]
    command += ["--reports-dir", str(reports), *args]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    path = reports / "conformance.json"
    statement = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return SuiteRun(done.returncode, done.stdout + done.stderr, statement)


@contextmanager
def target(
    workdir: Path,
    profiles: tuple[str, ...] = ("main",),
    command: tuple[str, ...] | None = None,
    features: frozenset[str] | None = None,
) -> Iterator[Path]:
    """A lab (``aoi lab``) of an AOI Server per profile, the reference or ``command``, as
    external processes; yield its IXIT (whose ICS claims ``features``, by default those of
    the reference)."""
    lab = Lab(workdir / "lab", workdir / "lab.log", profiles=profiles, server_command=command or ())
    try:
        path = lab.start()
        if features is not None:
            ixit = load_ixit(path)
            ixit = replace(ixit, ics=replace(ixit.ics, features=features))
            path.write_text(render_ixit(ixit), encoding="utf-8")
        yield path
    finally:
        lab.stop()
