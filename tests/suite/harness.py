"""Run the conformance suite in a subprocess, against the embedded reference or a target
started here, and read its conformance statement. Broken-target variants start their
own server command (``command=``) and compare the verdicts with the faults they inject."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from conformance.embedded import EmbeddedReference, embedded_ixit
from conformance.ixit import render_ixit

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class SuiteRun:
    returncode: int
    output: str
    statement: dict[str, Any]

    def verdicts(self) -> dict[str, str]:
        return {r["id"]: r["verdict"] for r in self.statement.get("requirements", [])}


def run_suite(reports: Path, *args: str, timeout: float = 600) -> SuiteRun:
    command = [sys.executable, "-m", "pytest", "conformance", "-p", "no:cacheprovider"]
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
    """Start an AOI Server per profile (the reference, or ``command``), yield an IXIT file
    (whose ICS claims ``features``, by default those of the reference)."""
    ixit = embedded_ixit()
    if features is not None:
        ixit = replace(ixit, ics=replace(ixit.ics, features=features))
    kwargs = {"command": command} if command else {}
    servers = EmbeddedReference(ixit, workdir / "server-logs", **kwargs)
    try:
        endpoints = {p: servers.endpoint(p) for p in profiles}
        path = workdir / "ixit.toml"
        path.write_text(
            render_ixit(replace(ixit, endpoints=endpoints, restart_command="")), encoding="utf-8"
        )
        yield path
    finally:
        servers.close()
