"""The lab's plan: each instance's configuration is one the server accepts, configured for
its profile, and the IXIT that describes the lab is one the conformance suite accepts."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conformance.client_target import parse_client_target
from conformance.ixit import parse_ixit
from conformance.ixit_check import problems

from aoi.lab import plan
from aoi.server.config import parse_config

LAB = plan.Secrets.generate()


def _config(tmp_path: Path, profile: str) -> dict[str, object]:
    instance = plan.Instance(profile, "127.0.0.1", 4567)
    files = plan.Files(
        db=str(tmp_path / "s.db"),
        policy=str(tmp_path / "policy.json"),
        tls_cert=str(tmp_path / "cert.pem"),
        tls_key=str(tmp_path / "key.pem"),
    )
    for path in (files.policy, files.tls_cert, files.tls_key):
        Path(path).write_text("{}", encoding="utf-8")
    document = tomllib.loads(plan.render_toml(plan.server_config(instance, LAB, files)))
    parse_config(document)  # raises ConfigError with every problem
    return document


@pytest.mark.parametrize("profile", plan.PROFILES)
def test_each_profile_gets_a_configuration_the_server_accepts(tmp_path: Path, profile: str) -> None:
    config = _config(tmp_path, profile)
    server, overload, security = config["server"], config["overload"], config["security"]
    assert isinstance(server, dict) and isinstance(overload, dict) and isinstance(security, dict)
    assert server["listen"] == "127.0.0.1:4567"
    assert ("tls_cert" in server) == (profile == "tls")
    assert overload["max_sessions"] == {"overload": 3, "shedding": 8}.get(profile, 100)
    assert bool(overload.get("shed")) == (profile == "shedding")
    assert ("max_loop_lag_ms" in overload) == (profile == "push_overload")
    assert security["failed_hello_limit"] == (3 if profile == "hello_limit" else 50)


def test_the_policy_names_the_instance() -> None:
    instance = plan.Instance("tls", "127.0.0.1", 4567)
    policy = plan.policy(instance, datetime(2026, 1, 1, tzinfo=UTC))
    assert policy["servers"] == [{"id": "tls", "url": "wss://127.0.0.1:4567/aoi", "priority": 0}]
    assert policy["valid_until"] == "2026-01-31T00:00:00Z"


@pytest.mark.parametrize("with_client", [False, True])
def test_the_ixit_of_the_lab_is_one_the_suite_accepts(with_client: bool) -> None:
    instances = [plan.Instance(p, "127.0.0.1", 5000 + n) for n, p in enumerate(plan.PROFILES)]
    spec = plan.Ixit(
        version="1",
        ca_file="/lab/tls/ca.pem",
        restart_command="aoi lab restart --dir /lab restart",
        client=plan.ClientCommand("/venv/bin/python", "/lab/client.toml") if with_client else None,
        instances=instances,
    )
    document = tomllib.loads(plan.render_toml(plan.ixit(spec, LAB)))
    assert problems(document, server=True) == []
    ixit = parse_ixit(document, Path("/lab"))
    assert ixit.endpoint("main").aoi2 == "ws://127.0.0.1:5000/aoi"
    assert ixit.endpoint("tls").aoi2.startswith("wss://")
    assert ixit.endpoint("tls").ca_file == Path("/lab/tls/ca.pem")
    assert ixit.client("A").credential == LAB.clients["A"]
    assert ixit.overload.max_sessions == plan.OVERLOAD_MAX_SESSIONS
    assert ixit.ics.roles == ({"S", "C"} if with_client else {"S"})
    client = parse_client_target(document, None, ("id", "credential"))
    assert (client is not None) == with_client
    if client is not None:
        assert client.welcome_timeout_s == plan.CLIENT_WELCOME_TIMEOUT_S
        assert "--config /lab/client.toml" in client.command
