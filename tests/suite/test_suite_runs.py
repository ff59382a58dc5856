"""The suite as vendors run it: collection, filters, server mode, repeatability."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conformance.ixit import load_ixit
from conformance.registry import load_scenarios

from tests.suite.harness import PYTEST, ROOT, run_suite, target

pytestmark = pytest.mark.slow


def _collect(*args: str) -> list[str]:
    done = subprocess.run(
        [PYTEST, "conformance", "--collect-only", "-q", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_filters_by_requirement_marker_and_feature(tmp_path: Path) -> None:
    reports = ("--reports-dir", str(tmp_path))
    everything = _collect(*reports)
    by_marker = _collect("-m", "AOI-OLC-002", *reports)
    by_option = _collect("--requirement", "AOI-OLC-001", *reports)
    by_feature = _collect("--feature", "overload", *reports)
    specs = load_scenarios()
    assert len(everything) == len(specs)
    assert len(by_marker) == len([s for s in specs if "AOI-OLC-002" in s.requirements])
    assert any("overloaded_server_refuses" in n for n in by_marker)
    assert len(by_option) == len([s for s in specs if "AOI-OLC-001" in s.requirements])
    assert len(by_feature) == len([s for s in specs if s.feature_file == "overload.feature"])
    # Scenarios that leave the target changed run last.
    assert "crash_and_restart" in everything[-1] or "ratelimited" in everything[-1]


def test_the_plugin_stays_out_of_other_runs() -> None:
    done = subprocess.run(
        [PYTEST, "tests/suite/test_wirelog.py", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert "AOI conformance" not in done.stdout


def test_server_mode_against_a_running_server(tmp_path: Path) -> None:
    with target(tmp_path) as ixit:
        run = run_suite(
            tmp_path / "reports", "--ixit", str(ixit),
            "--feature", "hello", "--feature", "delivery", "--feature", "registration",
        )  # fmt: skip
        secrets = load_ixit(ixit).secrets()
    assert run.returncode == 0, run.output[-3000:]
    for path in (tmp_path / "reports").rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not [s for s in secrets if s in text], f"a secret leaked into {path}"
    assert run.statement["target"]["mode"] == "server"
    verdicts = run.verdicts()
    for req in ("AOI-OLC-001", "AOI-CON-004", "AOI-DEL-001", "AOI-DEL-002", "AOI-DEL-003"):
        assert verdicts[req] == "PASS", req
    assert verdicts["AOI-APP-002"] == "PASS"
    rows = {r["id"]: r for r in run.statement["requirements"]}
    assert rows["AOI-DEL-009"]["explanation"] == "not run in this session (deselected)"
    assert rows["AOI-HLF-002"]["explanation"].startswith("no applicable scenario")
    assert run.statement["result"] == "incomplete"
    assert (tmp_path / "reports" / "allure-results").is_dir()
    assert (tmp_path / "reports" / "junit.xml").is_file()
    assert (tmp_path / "reports" / "conformance.html").is_file()


def test_two_runs_give_the_same_verdicts(tmp_path: Path) -> None:
    features = ("--feature", "malformed", "--feature", "report", "--feature", "payload")
    first = run_suite(tmp_path / "one", *features)
    second = run_suite(tmp_path / "two", *features)
    assert first.verdicts() == second.verdicts()
    assert first.statement["suite"] == second.statement["suite"]


def test_a_target_that_is_not_there_is_not_certified(tmp_path: Path) -> None:
    with target(tmp_path) as ixit:
        pass  # the server is stopped again: nothing listens at the IXIT's address
    run = run_suite(tmp_path / "reports", "--ixit", str(ixit), "--feature", "hello")
    assert run.returncode == 1
    verdicts = run.verdicts()
    assert verdicts["AOI-OLC-001"] in ("FAIL", "ERROR")
    assert verdicts["AOI-CON-004"] == "ERROR"  # blocked: never judged, never certified
    assert run.statement["result"] == "not conformant"


def test_an_undeclared_optional_feature_is_not_applicable(tmp_path: Path) -> None:
    with target(tmp_path, features=frozenset()) as ixit:
        run = run_suite(tmp_path / "reports", "--ixit", str(ixit), "--feature", "collapse")
    assert run.returncode == 0, run.output[-3000:]
    row = next(r for r in run.statement["requirements"] if r["id"] == "AOI-DEL-008")
    assert row["verdict"] == "N/A"
    assert "not declared in the ICS" in row["explanation"]
    assert "1 skipped" in run.output
