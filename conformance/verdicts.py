"""Verdicts: every check names a requirement; a scenario's verdicts are computed from them.

| verdict | when                                                         | Allure status |
|---------|--------------------------------------------------------------|---------------|
| PASS    | every check of the requirement held                          | passed        |
| FAIL    | a SHALL (or a declared optional feature) was violated        | failed        |
| WARN    | a SHOULD was violated; the target is still conformant        | passed        |
| N/A     | an optional feature the ICS does not declare                 | skipped       |
| ERROR   | the suite or its environment broke, not the target           | broken        |

A SHALL violation stops the scenario (:class:`ConformanceFailure`, an ``AssertionError``:
pytest and Allure report it "failed"); a SHOULD violation is recorded and the scenario
goes on. A scenario stopped before it could judge (:class:`PreconditionFailed`, and
:class:`TargetUnreachable` when the target could not be reached or the connection to it
was lost before the step saw what it waited for) is "broken": not a verdict on the target.
The ambient checks (every frame and answer against the schemas) are recorded and raised
only when the scenario ends, so that an invalid frame does not keep the scenario
from judging what it is about. A requirement that a scenario tags but never checks is a
defect of the suite (:class:`SuiteDefect`, reported "broken"), unless an earlier failure
stopped the scenario before it got there; it is then BLOCKED in that scenario and judged
by no one there. So is a requirement whose first checks held but whose later steps were
never reached: half a proof is no PASS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from conformance.registry import Level, Registry

# Checked by every scenario, tagged or not: each frame the target sends is schema-valid
# (AOI-GEN-002) and each AOI-3 answer matches the OpenAPI document (AOI-GEN-001).
AMBIENT = frozenset({"AOI-GEN-001", "AOI-GEN-002"})


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"
    NA = "N/A"
    ERROR = "ERROR"
    BLOCKED = "BLOCKED"  # per scenario only: not reached; never a requirement's verdict


# Worst first: how outcomes of several scenarios combine into a requirement's verdict.
SEVERITY = (Verdict.FAIL, Verdict.ERROR, Verdict.BLOCKED, Verdict.WARN, Verdict.PASS, Verdict.NA)


class ConformanceFailure(AssertionError):
    """The target violated a binding requirement."""

    def __init__(self, req: str, explanation: str) -> None:
        super().__init__(f"[{req}] {explanation}")
        self.req = req
        self.explanation = explanation


class RecordedFailure(ConformanceFailure):
    """A violation recorded while the scenario went on, raised when it ended: every step ran."""


class PreconditionFailed(Exception):
    """The target failed a step that the scenario needs before it can judge anything."""


class TargetUnreachable(PreconditionFailed):
    """No connection to the target could be made, or it was lost before the step observed
    what it waits for (a frame, a close code, an HTTP status): nothing was observed, so
    nothing is judged, whatever the step was about to check."""


class SuiteDefect(Exception):
    """The suite itself is wrong (an unknown or untagged requirement, a check never made)."""


@dataclass(frozen=True, slots=True)
class Check:
    req: str
    ok: bool
    explanation: str


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    explanation: str = ""


@dataclass
class ScenarioVerdicts:
    """The checks of one scenario run, and the verdicts they make."""

    registry: Registry
    tags: frozenset[str]
    checks: list[Check] = field(default_factory=list)
    # Requirements that steps not reached (or the step that stopped the scenario) cite.
    unreached: frozenset[str] = frozenset()

    def check(self, req: str, ok: bool, explanation: str) -> bool:
        """Record that ``req`` held (``ok``) or not, and why; a SHALL violation raises."""
        self.record(req, ok, explanation)
        if not ok and self.registry[req].binding is Level.SHALL:
            raise ConformanceFailure(req, explanation)
        return bool(ok)

    def record(self, req: str, ok: bool, explanation: str) -> None:
        """Record a check without stopping the scenario (see :meth:`raise_recorded`)."""
        if req not in self.registry:
            raise SuiteDefect(f"check names unknown requirement {req}")
        if req not in self.tags and req not in AMBIENT:
            raise SuiteDefect(f"check names {req}, which the scenario does not tag")
        self.checks.append(Check(req, bool(ok), explanation))

    def raise_recorded(self) -> None:
        """At the end of a scenario: fail it on the first recorded SHALL violation."""
        for c in self.checks:
            if not c.ok and self.registry[c.req].binding is Level.SHALL:
                raise RecordedFailure(c.req, c.explanation)

    def precondition(self, ok: bool, explanation: str) -> None:
        """A step the scenario needs; its failure blocks the scenario without judging."""
        if not ok:
            raise PreconditionFailed(f"precondition: {explanation}")

    def checked(self) -> frozenset[str]:
        return frozenset(c.req for c in self.checks)

    def unchecked(self) -> list[str]:
        return sorted(t for t in self.tags if t in self.registry and t not in self.checked())

    def outcomes(self, error: BaseException | None = None) -> dict[str, Outcome]:
        """Each tagged requirement's verdict in this run (plus ambient ones that failed).

        ``error`` is what stopped the scenario, if anything did.
        """
        if isinstance(error, RecordedFailure):  # the scenario ran to its end
            error = None
        result: dict[str, Outcome] = {}
        reqs = {t for t in self.tags if t in self.registry}
        reqs |= {c.req for c in self.checks if not c.ok}
        for req in sorted(reqs):
            mine = [c for c in self.checks if c.req == req]
            failed = [c for c in mine if not c.ok]
            if failed:
                shall = self.registry[req].binding is Level.SHALL
                verdict = Verdict.FAIL if shall else Verdict.WARN
                result[req] = Outcome(verdict, "; ".join(c.explanation for c in failed))
            elif isinstance(error, ConformanceFailure | PreconditionFailed):
                if isinstance(error, TargetUnreachable) and (not mine or req in self.unreached):
                    result[req] = Outcome(Verdict.BLOCKED, str(error))
                elif not mine:
                    result[req] = Outcome(Verdict.BLOCKED, f"not reached: {error}")
                elif req in self.unreached:
                    result[req] = Outcome(
                        Verdict.BLOCKED,
                        f"{len(mine)} check(s) held, later steps not reached: {error}",
                    )
                else:
                    result[req] = Outcome(
                        Verdict.PASS, "all its checks held before the scenario stopped"
                    )
            elif error is not None:
                result[req] = Outcome(Verdict.ERROR, f"{type(error).__name__}: {error}")
            elif mine:
                result[req] = Outcome(Verdict.PASS, f"{len(mine)} check(s) held")
            else:
                result[req] = Outcome(Verdict.ERROR, "suite defect: tagged but never checked")
        return result


def scenario_verdict(outcomes: dict[str, Outcome]) -> Verdict:
    """The label of a whole scenario: its worst requirement outcome."""
    if not outcomes:
        return Verdict.ERROR
    return min((o.verdict for o in outcomes.values()), key=SEVERITY.index)


def combine(verdicts: list[Verdict]) -> Verdict:
    """A requirement's verdict from the outcomes of its scenarios."""
    if not verdicts:
        return Verdict.NA
    worst = min(verdicts, key=SEVERITY.index)
    return Verdict.ERROR if worst is Verdict.BLOCKED else worst
