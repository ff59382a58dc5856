"""The vendor lab: ``aoi lab`` starts the reference servers as external processes with the
IXIT that describes them, and the suite certifies them through ``--ixit``, the way a vendor
certifies a server, not through the embedded shortcut. The lab runs on Redis, so its main
instance is a fleet of two nodes: every push crosses from one node to the other."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from bench.redis_server import RedisServer
from conformance.ixit import load_ixit
from conformance.registry import load_registry

from tests.suite.harness import SuiteRun, run_suite

pytestmark = pytest.mark.slow
AOI = str(Path(sys.executable).with_name("aoi"))


def test_the_lab_is_certified_through_its_ixit(tmp_path: Path, own_redis: RedisServer) -> None:
    lab_dir = tmp_path / "lab"
    ixit = lab_dir / "ixit.toml"
    with (tmp_path / "lab.out").open("wb") as out:
        lab = subprocess.Popen(
            [AOI, "lab", "--dir", str(lab_dir), "--store", own_redis.url],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not ixit.exists():  # the lab says it is ready only by writing its IXIT
            assert lab.poll() is None, (tmp_path / "lab.out").read_text()
            assert time.monotonic() < deadline, "the lab was not ready in 60 s"
            time.sleep(0.05)
        endpoints = load_ixit(ixit).endpoints
        run = run_suite(tmp_path / "reports", "--ixit", str(ixit))
        island = not_a_fleet(tmp_path, lab_dir)
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
    resumes = next(r for r in statement["requirements"] if r["id"] == "AOI-CON-004")
    fleet = [s["verdict"] for s in resumes["scenarios"] if "fleet" in s["name"]]
    assert fleet == ["PASS"], resumes["scenarios"]

    # A "fleet" node that keeps its own state: the resumed session is not the same.
    assert island.returncode == 1, island.output[-3000:]
    assert island.verdicts()["AOI-CON-004"] == "FAIL"

    # Ctrl-C stopped every server of the lab.
    for endpoint in endpoints.values():
        parts = urlsplit(endpoint.http)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((parts.hostname, parts.port), 1).close()


def not_a_fleet(tmp_path: Path, lab_dir: Path) -> SuiteRun:
    """The fleet scenario against the lab's main node and a server with the same clients
    but a store of its own, declared as the other node of its fleet."""
    config = tmp_path / "island.toml"
    lines = (lab_dir / "main.toml").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.startswith(("store", "public_http_url", "listen"))]
    kept.insert(kept.index("[server]") + 1, 'listen = "127.0.0.1:0"')
    config.write_text("\n".join(kept).replace(str(lab_dir / "state"), str(tmp_path)) + "\n")
    ready = tmp_path / "island.json"
    island = subprocess.Popen(
        [AOI, "server", "--config", str(config), "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert island.poll() is None and time.monotonic() < deadline, "no island server"
            time.sleep(0.05)
        here = json.loads(ready.read_text(encoding="utf-8"))
        ixit = (lab_dir / "ixit.toml").read_text(encoding="utf-8")
        fleet = load_ixit(lab_dir / "ixit.toml").endpoints["fleet"]
        moved = ixit.replace(fleet.aoi2, here["aoi2"]).replace(fleet.http, here["http"])
        (tmp_path / "island-ixit.toml").write_text(moved, encoding="utf-8")
        return run_suite(
            tmp_path / "island-reports", "--ixit", str(tmp_path / "island-ixit.toml"), "-k", "fleet"
        )
    finally:
        island.terminate()
        island.wait(timeout=10)
