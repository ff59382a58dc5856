"""The suite's wheel, the way a vendor uses it: built from this checkout, installed into a
fresh virtual environment without the reference, run from a directory of the vendor's,
against a reference server started apart as an external process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance.embedded import Lab
from conformance.plugin import NO_TARGET
from conformance.registry import load_scenarios
from conformance.report import suite_identity

from tests.suite.harness import ROOT

pytestmark = pytest.mark.slow
AOI = str(Path(sys.executable).with_name("aoi"))


@pytest.fixture(scope="module")
def suite_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin/`` of a fresh venv holding the suite's wheel and its dependencies only."""
    work = tmp_path_factory.mktemp("wheel")
    project = str(ROOT / "packaging" / "aoi-conformance")
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--wheel-dir", str(work / "dist"), project)  # fmt: skip
    (wheel,) = (work / "dist").glob("aoi_conformance-*.whl")
    # Without a pip of its own: this environment's pip installs into it.
    _run(sys.executable, "-m", "venv", "--without-pip", str(work / "venv"))
    python = str(work / "venv" / "bin" / "python")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
         "--disable-pip-version-check", str(wheel))  # fmt: skip
    return work / "venv" / "bin"


@pytest.fixture
def vendor(tmp_path: Path) -> Path:
    """A directory of the vendor's, far from any checkout of the repository."""
    return tmp_path


def _run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_wheel_collects_every_scenario_without_the_reference(
    suite_bin: Path, vendor: Path
) -> None:
    no_reference = subprocess.run(
        [suite_bin / "python", "-c", "import aoi"], capture_output=True, check=False
    )
    assert no_reference.returncode != 0
    done = _run(str(suite_bin / "pytest"), "--pyargs", "conformance", "--co", "-q", cwd=vendor)
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert len(collected) == len(load_scenarios())
    assert "Warning" not in done.stdout + done.stderr


def test_without_a_target_or_the_reference_one_line_says_what_to_give(
    suite_bin: Path, vendor: Path
) -> None:
    done = subprocess.run(
        [suite_bin / "pytest", "--pyargs", "conformance"],
        cwd=vendor, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 4  # pytest's usage error
    assert [line for line in done.stderr.splitlines() if line] == [f"ERROR: {NO_TARGET}"]


@pytest.fixture
def reference_server(tmp_path: Path) -> Iterator[Path]:
    """A reference server started apart (``aoi lab`` of the checkout's environment)."""
    lab = Lab(tmp_path / "lab", tmp_path / "lab.log", profiles=["main"], command=(AOI, "lab"))
    try:
        yield lab.start()
    finally:
        lab.stop()


def test_the_wheel_certifies_a_server_given_by_target_and_ixit(
    suite_bin: Path, vendor: Path, reference_server: Path
) -> None:
    from conformance.ixit import load_ixit

    target = load_ixit(reference_server).endpoint("main").aoi2
    features = ("--feature", "hello", "--feature", "delivery", "--feature", "registration")
    done = subprocess.run(
        [suite_bin / "pytest", "--pyargs", "conformance", "--target", target,
         "--ixit", str(reference_server), *features],
        cwd=vendor, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    statement = json.loads((vendor / "reports" / "conformance.json").read_text())
    verdicts = {r["id"]: r["verdict"] for r in statement["requirements"]}
    for req in ("AOI-OLC-001", "AOI-CON-004", "AOI-DEL-001", "AOI-DEL-002", "AOI-APP-002"):
        assert verdicts[req] == "PASS", req
    assert statement["target"]["label"] == target
    # The wheel judges with exactly the features and schemas of this checkout.
    assert statement["suite"] == suite_identity()
