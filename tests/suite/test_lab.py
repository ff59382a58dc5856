"""The vendor lab: ``aoi lab`` starts the reference servers as external processes with the
IXIT that describes them, and the suite certifies them through ``--ixit``, the way a vendor
certifies a server, not through the embedded shortcut."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conformance.ixit import load_ixit
from conformance.registry import load_registry

from tests.suite.harness import run_suite

pytestmark = pytest.mark.slow
AOI = str(Path(sys.executable).with_name("aoi"))


def test_the_lab_is_certified_through_its_ixit(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    ixit = lab_dir / "ixit.toml"
    with (tmp_path / "lab.out").open("wb") as out:
        lab = subprocess.Popen(
            [AOI, "lab", "--dir", str(lab_dir)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while not ixit.exists():  # the lab says it is ready only by writing its IXIT
            assert lab.poll() is None, (tmp_path / "lab.out").read_text()
            assert time.monotonic() < deadline, "the lab was not ready in 60 s"
            time.sleep(0.05)
        endpoints = load_ixit(ixit).endpoints
        run = run_suite(tmp_path / "reports", "--ixit", str(ixit))
    finally:
        lab.send_signal(signal.SIGINT)  # Ctrl-C
        code = lab.wait(timeout=30)
    said = (tmp_path / "lab.out").read_text(encoding="utf-8")
    assert f"pytest conformance --ixit {ixit}" in said
    assert code == 0, said

    statement = run.statement
    assert run.returncode == 0, run.output[-3000:]
    assert statement["target"]["mode"] == "server"
    assert statement["run"]["complete"] and statement["result"] == "conformant"
    registry = load_registry()
    features = set(statement["ics"]["features"])
    for req, verdict in run.verdicts().items():
        requirement = registry[req]
        binds = "S" in requirement.roles and (
            requirement.feature is None or requirement.feature in features
        )
        assert verdict == ("PASS" if binds else "N/A"), req
    assert run.verdicts()["AOI-DEL-010"] == "PASS"  # the lab's restart command crashed one

    # Ctrl-C stopped every server of the lab.
    for endpoint in endpoints.values():
        parts = urlsplit(endpoint.http)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((parts.hostname, parts.port), 1).close()
