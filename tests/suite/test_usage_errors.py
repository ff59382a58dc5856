"""Every mistake on the command line or in the IXIT is a usage error that says, in one
line each, what is wrong and where: ``pytest conformance`` as users type it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.suite.harness import ROOT, SUITE

EXAMPLE = ROOT / "conformance" / "ixit.example.toml"
USAGE_ERROR = 4  # pytest.ExitCode.USAGE_ERROR


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [*SUITE, "--reports-dir", str(tmp_path / "reports"), *args]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_every_mistake_of_an_ixit_is_listed_at_once(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("max_sessions = 4", "max_sesions = 4")
    text = text.replace("[clients.B]", "[client.B]")
    text = text.replace('key = "change-me-main"\n', "")
    text = text.replace("[clients.E]", "[clients.F]")
    ixit = tmp_path / "mine.toml"
    ixit.write_text(text, encoding="utf-8")
    done = _pytest(tmp_path, "--target", "ws://127.0.0.1:9/aoi", "--ixit", str(ixit))
    assert done.returncode == USAGE_ERROR, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "INTERNALERROR" not in done.stderr + done.stdout
    lines = done.stderr.splitlines()
    assert lines[0] == f"ERROR: IXIT {ixit}: 5 problems:"
    assert lines[1:6] == [
        "  [client.B]: unknown table; did you mean [clients.B]?",
        "  [overload] max_sesions: unknown key; did you mean max_sessions?",
        "  [server_apps.main] key: missing",
        # what a server run needs besides: the clients the features name
        "  [clients.B]: missing",
        "  [clients.E]: missing",
    ]
    assert not (tmp_path / "reports" / "conformance.json").exists()


def test_an_unknown_requirement_or_feature_is_refused_with_the_nearest_name(
    tmp_path: Path,
) -> None:
    done = _pytest(tmp_path, "--requirement", "aoi-ocl-002", "--feature", "overlaod")
    assert done.returncode == USAGE_ERROR
    lines = done.stderr.splitlines()
    assert lines[0].startswith(
        "ERROR: --requirement: unknown 'aoi-ocl-002' (did you mean 'AOI-OLC-002'"
    ), lines
    assert lines[1] == "--feature: unknown 'overlaod' (did you mean 'overload'?)"
    assert not (tmp_path / "reports" / "conformance.json").exists()


def test_a_wrong_option_value_is_one_line_each_and_moves_nothing(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "conformance.json").write_text("{}", encoding="utf-8")  # a previous run's
    done = _pytest(
        tmp_path,
        *("--target", "127.0.0.1:9100", "--ixit", str(EXAMPLE), "--target-http", "ftp://x"),
        *("--timeout-scale", "-1", "-m", "AOI-OLC-02 or slow", "--requirement", "zzz"),
    )
    assert done.returncode == USAGE_ERROR, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "ERROR: --requirement: unknown 'zzz'; known: " + ", ".join(_known()),
        "-m: unknown 'AOI-OLC-02' (did you mean 'AOI-OLC-012' or 'AOI-OLC-002' or 'AOI-OLC-013'?)",
        "--target: '127.0.0.1:9100' is not a ws:// or wss:// URL (such as wss://aoi.example.net/aoi)",
        "--target-http: 'ftp://x' is not a http:// or https:// URL (such as https://aoi.example.net)",
        "--timeout-scale: -1.0 is not a positive number",
        "",
    ]
    assert (reports / "conformance.json").read_text(encoding="utf-8") == "{}"


def test_a_reports_dir_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    done = subprocess.run(
        [*SUITE, "--reports-dir", str(tmp_path / "file" / "reports")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == USAGE_ERROR, done.stdout + done.stderr
    assert done.stderr.splitlines()[0] == (
        f"ERROR: --reports-dir {tmp_path / 'file' / 'reports'}: Not a directory"
    )


def _known() -> list[str]:
    from conformance.registry import load_registry

    return sorted(load_registry().requirements)
