"""The reports directory of a run, and what a partial run does to a complete statement.

A run writes its statement, Allure results, JUnit XML and wire logs into one directory
(``reports/`` or ``--reports-dir``): together they are what a vendor submits. A partial
run (``--requirement``, ``--feature``, ``-m``, ``-k``, node ids, ``--deselect``) into a
directory that holds the statement of a complete run first moves that whole bundle to
``complete-<its start time>/`` inside it, and says so: a complete statement is never
overwritten by a partial one, and the newest run's reports are always where they were.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

# What one run writes; the bundle that moves as a whole.
BUNDLE = (
    "conformance.json",
    "conformance.html",
    "junit.xml",
    "allure-results",
    "allure-report",
    "wire",
    "embedded",
    "clients",
)
STALE = ("wire", "embedded", "clients")  # an earlier run's would mix with this one's


def is_partial(config: pytest.Config) -> bool:
    """Whether the command line selects part of the suite."""
    option = config.option
    return bool(
        config.getoption("requirement")
        or option.features
        or option.markexpr
        or option.keyword
        or getattr(option, "deselect", None)
        or any("::" in arg for arg in config.args)
    )


def prepare(reports: Path, *, partial: bool) -> str:
    """Make ``reports`` ready for a run; what the run must say about it ('' if nothing)."""
    reports.mkdir(parents=True, exist_ok=True)
    note = ""
    if partial:
        started = _complete_statement(reports / "conformance.json")
        if started:
            kept = reports / f"complete-{started.replace('-', '').replace(':', '')}"
            kept.mkdir(exist_ok=True)
            for name in BUNDLE:
                if (reports / name).exists():
                    shutil.move(str(reports / name), str(kept / name))
            note = (
                f"a partial run: the complete statement of {started} and its reports "
                f"were moved to {kept}"
            )
    for stale in STALE:
        shutil.rmtree(reports / stale, ignore_errors=True)
    return note


def _complete_statement(path: Path) -> str:
    """When the run of the statement at ``path`` started, if it was complete ('' if not)."""
    try:
        run = json.loads(path.read_text(encoding="utf-8"))["run"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return str(run.get("started", "")) if run.get("complete") else ""
