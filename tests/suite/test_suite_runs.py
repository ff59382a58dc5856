"""The suite as vendors run it: collection, filters, server mode, repeatability."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conformance.ixit import load_ixit
from conformance.registry import load_scenarios

from tests.suite.harness import PYTEST, ROOT, SUITE, run_suite, target

pytestmark = pytest.mark.slow


def _collect(*args: str) -> list[str]:
    done = subprocess.run(
        [*SUITE, "--collect-only", "-q", *args],
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


def test_a_target_that_is_not_there_is_not_judged_and_the_run_says_so_at_once(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    run = run_suite(
        tmp_path, "--target", "ws://127.0.0.1:9/aoi", "--ixit", "conformance/ixit.example.toml"
    )
    seconds = time.monotonic() - started
    assert run.returncode == 1 and seconds < 60, (seconds, run.output[-3000:])
    said = [line for line in run.output.splitlines() if "target unreachable: main" in line]
    assert said[0].startswith(
        "AOI conformance: target unreachable: main ws://127.0.0.1:9/aoi (connection refused)"
    )
    assert run.output.rstrip().splitlines()[-1].startswith("AOI conformance: incomplete: ")
    server = [r for r in run.statement["requirements"] if "S" in r["roles"]]
    assert {r["verdict"] for r in server} == {"ERROR", "N/A"}
    for row in server:
        if row["verdict"] == "ERROR":
            assert row["explanation"].startswith("target unreachable: "), row
        else:  # optional features the example's ICS does not declare
            assert "not declared" in row["explanation"] or "no [targets." in row["explanation"]
    assert run.statement["result"] == "incomplete"
    # Allure: broken, in the category of targets unreachable or blocked, never failed.
    results = [
        json.loads(p.read_text()) for p in (tmp_path / "allure-results").glob("*-result.json")
    ]
    assert {r["status"] for r in results} == {"broken", "skipped"}
    broken = [r for r in results if r["status"] == "broken"]
    assert all(
        r["statusDetails"]["message"].startswith("BLOCKED: target unreachable") for r in broken
    )
    categories = json.loads((tmp_path / "allure-results" / "categories.json").read_text())
    assert next(c["name"] for c in categories if "broken" in c["matchedStatuses"]).startswith(
        "Target unreachable"
    )


def test_a_partial_run_keeps_a_complete_statement(tmp_path: Path) -> None:
    complete = {"run": {"started": "2026-01-02T03:04:05Z", "complete": True}}
    (tmp_path / "conformance.json").write_text(json.dumps(complete), encoding="utf-8")
    (tmp_path / "wire").mkdir()
    (tmp_path / "wire" / "scenario.log").write_text("evidence", encoding="utf-8")
    run = run_suite(
        tmp_path,
        "--target", "ws://127.0.0.1:9/aoi", "--ixit", "conformance/ixit.example.toml",
        "--feature", "hello",
    )  # fmt: skip
    kept = tmp_path / "complete-20260102T030405Z"
    assert json.loads((kept / "conformance.json").read_text()) == complete
    assert (kept / "wire" / "scenario.log").read_text() == "evidence"
    assert f"were moved to {kept}" in run.output
    assert run.statement["run"]["complete"] is False


@pytest.mark.parametrize(
    ("feature", "requirement", "scenarios"),
    [("collapse", "AOI-DEL-008", 1), ("batch", "AOI-DEL-012", 7)],
)
def test_an_undeclared_optional_feature_is_not_applicable(
    tmp_path: Path, feature: str, requirement: str, scenarios: int
) -> None:
    with target(tmp_path, features=frozenset()) as ixit:
        run = run_suite(tmp_path / "reports", "--ixit", str(ixit), "--feature", feature)
    assert run.returncode == 0, run.output[-3000:]
    row = next(r for r in run.statement["requirements"] if r["id"] == requirement)
    assert row["verdict"] == "N/A"
    assert "not declared in the ICS" in row["explanation"]
    assert f"{scenarios} skipped" in run.output
