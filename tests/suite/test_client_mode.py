"""Client mode as vendors run it: ``--target-client "CMD"``, its IXIT table, its reports."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
from conformance.client_target import (
    PLACEHOLDERS,
    ClientProcess,
    ClientStartError,
    ClientTarget,
    Tolerances,
    parse_client_target,
)
from conformance.ixit import IxitError
from conformance.ixit_check import problems, schema

from tests.suite.harness import run_suite

IDENTITY = ("generated-id", "generated-secret")
REFERENCE = (
    f"{shlex.quote(sys.executable)} -m aoi client --provisioning-url {{provisioning_url}} "
    "--provisioning-url {provisioning_url_2} --app-port {app_port} --state-dir {state_dir} "
    "--client-id {client_id} --credential {credential} --ca-file {ca_file}"
)


def test_the_command_of_the_option_wins_over_the_ixit() -> None:
    document = {"client": {"command": "from-ixit {app_port}", "welcome_timeout_s": 3}}
    target = parse_client_target(document, "from-option {app_port}", IDENTITY)
    assert target is not None
    assert target.command == "from-option {app_port}"
    assert target.welcome_timeout_s == 3
    assert (target.client_id, target.credential) == IDENTITY
    assert repr(target.credential) == "'***'"
    assert parse_client_target({}, None, IDENTITY) is None


def test_the_ixit_may_fix_the_identity_and_the_tolerances() -> None:
    document = {
        "client": {
            "command": "c",
            "client_id": "dut-1",
            "credential": "s3cret",
            "tolerances": {"retry_after_s": 0.5, "jitter_spread": 0.2},
        }
    }
    target = parse_client_target(document, None, IDENTITY)
    assert target is not None
    assert (target.client_id, target.credential) == ("dut-1", "s3cret")
    assert target.tolerances == Tolerances(retry_after_s=0.5, jitter_spread=0.2)
    assert problems({"client": {"command": "c", "tolerances": {"retry_after": 1}}}) == [
        "[client.tolerances] retry_after: unknown key; did you mean retry_after_s?"
    ]


def test_the_ixit_schema_knows_every_tolerance() -> None:
    client = schema()["properties"]["client"]["properties"]
    assert set(client["tolerances"]["properties"]) == set(Tolerances.__dataclass_fields__)


def test_placeholders_are_filled_token_by_token() -> None:
    target = ClientTarget("run --dir {state_dir} --port={app_port} 'a b'", "id", "secret")
    values = {p: f"<{p}>" for p in PLACEHOLDERS} | {"state_dir": "/tmp/with space"}
    assert target.argv(values) == ["run", "--dir", "/tmp/with space", "--port=<app_port>", "a b"]
    with pytest.raises(IxitError, match=r"unknown placeholder \{nope\}"):
        ClientTarget("run {nope}", "id", "secret").argv(values)


def test_a_client_that_exits_at_once_is_reported(tmp_path: Path) -> None:
    command = f"{shlex.quote(sys.executable)} -c 'import sys; print(\"no\"); sys.exit(3)'"
    process = ClientProcess(
        ClientTarget(command, "id", "secret"), {"app_port": "9"}, tmp_path / "log"
    )
    with pytest.raises(ClientStartError, match="exited with 3"):
        process.start(10)
    assert "no" in (tmp_path / "log").read_text()


@pytest.mark.slow
def test_client_mode_against_the_reference_client(tmp_path: Path) -> None:
    ixit = tmp_path / "client.toml"
    ixit.write_text(
        '[ics]\nimplementation = "reference client"\nroles = ["C"]\n\n'
        '[client]\nclient_id = "dut-1"\ncredential = "dut-secret-0123456789"\n',
        encoding="utf-8",
    )
    features = ("--feature", "client_registration", "--feature", "client_delivery")
    run = run_suite(
        tmp_path / "reports", "--ixit", str(ixit), "--target-client", REFERENCE, *features
    )
    assert run.returncode == 0, run.output[-3000:]
    assert run.statement["target"]["mode"] == "client"
    rows = {r["id"]: r for r in run.statement["requirements"]}
    for req in ("AOI-APP-001", "AOI-APP-003", "AOI-DEL-002", "AOI-DEL-003"):
        assert rows[req]["verdict"] == "PASS", rows[req]
    assert rows["AOI-OLC-001"]["explanation"].startswith("no applicable scenario: role S")
    assert rows["AOI-OLC-005"]["explanation"] == "not run in this session (deselected)"
    assert rows["AOI-MS-001"]["explanation"].startswith("optional feature 'multi_server'")
    assert run.statement["result"] == "incomplete"
    for path in (tmp_path / "reports").rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            assert "dut-secret-0123456789" not in text, f"the client's credential leaked: {path}"
    assert list((tmp_path / "reports" / "clients").glob("*.log"))


@pytest.mark.slow
def test_an_unknown_placeholder_stops_the_run(tmp_path: Path) -> None:
    run = run_suite(tmp_path, "--target-client", "client --port {port}", "--feature", "hello")
    assert run.returncode != 0
    assert "unknown placeholder {port}" in run.output


def test_the_documented_client_table_parses() -> None:
    import re
    import tomllib

    guide = (Path(__file__).resolve().parents[2] / "docs" / "conformance.md").read_text()
    section = guide[guide.index("### The IXIT of a client") :]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    document = tomllib.loads(block.group(1))
    target = parse_client_target(document, None, IDENTITY)
    assert target is not None
    assert target.tolerances == Tolerances()  # the documented defaults are the defaults
    assert document["ics"]["roles"] == ["C"]
