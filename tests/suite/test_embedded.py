"""The embedded reference: configuration written for each profile, failures reported."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from conformance.embedded import (
    START_ATTEMPTS,
    EmbeddedError,
    EmbeddedReference,
    embedded_ixit,
    render_toml,
)


def test_a_server_that_exits_at_once_is_retried_then_reported(tmp_path: Path) -> None:
    command = (sys.executable, "-c", "import sys; print('cannot bind'); sys.exit(3)")
    servers = EmbeddedReference(embedded_ixit(), tmp_path, command=command)
    try:
        with pytest.raises(EmbeddedError, match="exited with 3") as caught:
            servers.endpoint("main")
        assert caught.value.exited
        log = (tmp_path / "main.log").read_text(encoding="utf-8")
        assert log.count("(conformance: start attempt") == START_ATTEMPTS
        with pytest.raises(EmbeddedError):  # remembered, not started again
            servers.endpoint("main")
    finally:
        servers.close()


@pytest.mark.parametrize("profile", ["main", "overload", "shedding", "hello_limit", "tls"])
def test_each_profile_gets_a_configuration_of_its_own(tmp_path: Path, profile: str) -> None:
    servers = EmbeddedReference(embedded_ixit(), tmp_path)
    try:
        document, ca_file = servers._config(profile, 4567)
        config = tomllib.loads(render_toml(document))
        assert config["server"]["listen"] == "127.0.0.1:4567"
        assert len(config["clients"]) == len(servers.ixit.clients)
        assert (ca_file is not None) == (profile == "tls")
        if profile == "overload":
            assert config["overload"]["max_sessions"] == servers.ixit.overload.max_sessions
        if profile == "shedding":
            assert config["overload"]["shed"] is True
        if profile == "hello_limit":
            assert config["security"]["failed_hello_limit"] == servers.ixit.failed_hello_limit
    finally:
        servers.close()
